"""The chat backends (OpenAI-compatible VLM and Gemini) on face crops, against the loopback servers, with every
fault: off-list words (synonyms, one re-ask, then failed), invalid and truncated JSON, 429 with Retry-After, a
timeout, the daily quota and a retired model (which stop the run), and the endpoint's slot cap."""

import io
import shutil

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from emotion.models import EmotionProposal, ImageEmotion
from emotion.services import label_images, open_labeller, select_images
from tagsite.models import Job
from tests.ai.test_roles import MODEL, SERVERS, point_role_at
from tests.llm_server import user_text

pytestmark = pytest.mark.django_db


def answers(*words, confidence=0.8):
    """A chat rule answering these words in turn (then the last one again)."""
    said = list(words)

    def rule(body):
        return {"emotion": said.pop(0) if len(said) > 1 else said[0], "confidence": confidence}

    return rule


@pytest.fixture
def two(photos, tmp_path, labels):
    """A folder with a smile and Grace Hopper."""
    folder = tmp_path / "two"
    folder.mkdir()
    for name in ("astronaut.png", "grace_hopper.jpg"):
        shutil.copy(photos / name, folder / name)
    return folder


@pytest.fixture(params=sorted(SERVERS))
def server(request, monkeypatch):
    with SERVERS[request.param](models=[MODEL], hang_seconds=2) as server:
        server.retry_after = 0
        server.kind = request.param
        point_role_at(monkeypatch, "emotion", request.param, server)
        monkeypatch.setenv("TAGSITE_LLM_EMOTION_TIMEOUT", "1")
        monkeypatch.setenv("TAGSITE_LLM_EMOTION_MAX_PARALLEL", "1")  # one image at a time: answers in path order
        yield server


def run(folder, **options) -> str:
    out = io.StringIO()
    call_command("auto_tag_images", str(folder), "--backend", "llm", stdout=out, verbosity=0, **options)
    return out.getvalue()


def labels_by_file() -> dict[str, tuple[str, str]]:
    return {
        p.image.filename: (p.label.name, p.answer) for p in EmotionProposal.objects.select_related("image", "label")
    }


def test_each_face_crop_is_asked_with_the_enum_and_synonyms_map_other_words(server, two):
    server.chat_rule = answers("happy", "serious")
    text = run(two)
    assert labels_by_file() == {"astronaut.png": ("happy", ""), "grace_hopper.jpg": ("neutral", "serious")}
    assert "Wrote 2 labels" in text
    requests = server.chat_requests()
    assert len(requests) == 2
    if server.kind == "openai":
        body = requests[0]
        schema = body["response_format"]["json_schema"]["schema"]
        assert schema["properties"]["emotion"]["enum"] == [
            "happy",
            "surprise",
            "angry",
            "disgust",
            "fear",
            "neutral",
            "sad",
        ]
        assert [part["type"] for part in body["messages"][1]["content"]] == ["text", "image_url"]  # the face crop
    proposal = EmotionProposal.objects.get(image__path__endswith="grace_hopper.jpg")
    assert proposal.producer.name == MODEL and proposal.confidence == 0.8


def test_an_off_list_word_is_asked_again_once_then_the_image_fails(server, two):
    server.chat_rule = answers("bored", "happy", "bored", "bored")
    run(two)
    assert labels_by_file() == {"astronaut.png": ("happy", "")}
    reask = server.chat_requests()[1]
    assert "not on the list" in (user_text(reask) if "messages" in reask else str(reask["contents"]))
    failed = ImageEmotion.objects.get(image__path__endswith="grace_hopper.jpg")
    assert failed.outcome == "failed" and "bored" in failed.detail and len(server.chat_requests()) == 4
    job = Job.objects.filter(kind="emotion").get()
    assert job.status == "partial" and job.errors[0]["item"].endswith("grace_hopper.jpg")
    server.chat_rule = answers("sad")  # a failed image is asked again by the next run; the labelled one is not
    run(two)
    assert labels_by_file()["grace_hopper.jpg"] == ("sad", "") and len(server.chat_requests()) == 5


def test_faces_mode_never_sends_an_image_without_a_detected_face(server, two, photos):
    """The default chat input is each detected face's crop: a face-free photo is "no face", and nothing is sent."""
    shutil.copy(photos / "coffee.png", two / "coffee.png")
    server.chat_rule = answers("happy", "neutral")
    run(two)
    assert ImageEmotion.objects.get(image__path__endswith="coffee.png").outcome == "no_face"
    assert len(server.chat_requests()) == 2  # the astronaut's and Grace Hopper's faces, not the coffee
    if server.kind == "openai":
        assert all(image.size[0] < 400 for image in server.images)  # crops, not the 512-pixel photo


def test_whole_image_mode_sends_each_image_undetected_and_the_model_says_if_it_shows_a_face(server, two, photos):
    """--chat-input image: seed 004's whole image, no detector (it misses drawn faces); the model answers whether
    there is a face, so a face-free photo is "no face" by the model's word, and each image is one label."""
    shutil.copy(photos / "coffee.png", two / "coffee.png")
    said = iter([(True, "happy"), (False, "neutral"), (True, "calm")])  # astronaut, coffee, grace_hopper

    def rule(body):
        face, word = next(said)
        return {"face": face, "emotion": word, "confidence": 0.7}

    server.chat_rule = rule
    text = run(two, chat_input="image")
    assert "Wrote 2 labels" in text
    assert labels_by_file() == {"astronaut.png": ("happy", ""), "grace_hopper.jpg": ("neutral", "calm")}
    runs = {run.image.filename: run for run in ImageEmotion.objects.select_related("image", "producer")}
    assert runs["coffee.png"].outcome == "no_face" and runs["astronaut.png"].outcome == "labelled"
    assert runs["astronaut.png"].producer.prompt_version == "emotion-image-v1"  # not the face crops' producer
    face = runs["grace_hopper.jpg"].faces.get()
    assert face.box == (0, 0, 512, 600)  # the whole image, in its own pixels
    requests = server.chat_requests()
    assert len(requests) == 3
    first = requests[0]
    schema = (
        first["response_format"]["json_schema"]["schema"]
        if "response_format" in first
        else first["generationConfig"]["responseJsonSchema"]
    )
    assert schema["required"] == ["face", "emotion", "confidence"]
    if server.kind == "openai":
        assert [image.size for image in server.images][:2] == [(512, 512), (600, 400)]  # whole, not cropped
    job = Job.objects.filter(kind="emotion").get()
    assert job.params["chat_input"] == "image" and job.counts == {"labelled": 2, "no_face": 1}


def test_the_chat_input_is_for_the_llm_backend(two):
    with pytest.raises(CommandError, match="--chat-input is for the llm backend"):
        call_command("auto_tag_images", str(two), "--backend", "local", "--chat-input", "image", verbosity=0)


FAULTS = {
    "openai": [("429", "invalid_json", "hang"), ("truncated", "500")],  # each set within one re-ask and retries
    "gemini": [("rate_minute", "500")],
}


def test_transport_and_format_faults_are_retried_or_re_asked(server, two):
    """429 (Retry-After) and 500 and a hang past the timeout are retried; invalid or truncated JSON is asked again."""
    server.chat_rule = answers("happy")
    for faults in FAULTS[server.kind]:
        ImageEmotion.objects.all().delete()
        server.inject(*faults)
        run(two, limit=1)
        assert labels_by_file() == {"astronaut.png": ("happy", "")}, faults
        assert ImageEmotion.objects.get().outcome == "labelled" and not server.faults


def test_a_gemini_daily_quota_stops_the_run(monkeypatch, two):
    with SERVERS["gemini"](models=[MODEL]) as server:
        point_role_at(monkeypatch, "emotion", "gemini", server)
        monkeypatch.setenv("TAGSITE_LLM_EMOTION_MAX_PARALLEL", "1")
        server.inject("quota_daily")
        with pytest.raises(CommandError, match="daily quota exhausted.*The run stopped"):
            run(two)
        assert len(server.chat_requests()) == 1  # not one failure per image
    job = Job.objects.filter(kind="emotion").get()
    assert job.status == "failed" and "daily quota" in job.message
    assert not ImageEmotion.objects.exists()


def test_seed_004s_retired_gemini_model_is_named_with_a_current_one(monkeypatch, two):
    with SERVERS["gemini"](models=["gemini-2.5-flash"]) as server:
        point_role_at(monkeypatch, "emotion", "gemini", server)
        monkeypatch.setenv("TAGSITE_LLM_EMOTION_MODEL", "gemini-1.5-flash")
        monkeypatch.setenv("TAGSITE_LLM_EMOTION_MAX_PARALLEL", "1")
        with pytest.raises(CommandError, match=r"'gemini-1\.5-flash' is not served.*e\.g\. gemini-2\.5-flash"):
            run(two)
        assert len(server.chat_requests()) == 1


def test_an_endpoint_that_keeps_failing_stops_the_run_instead_of_failing_every_image(
    monkeypatch, photos, tmp_path, labels
):
    """A text-only model (llama.cpp without its projector refuses images): three requests in a row fail, and the
    run stops there with the reason, rather than asking (and failing) each of the folder's images."""
    folder = tmp_path / "many"
    folder.mkdir()
    for index in range(6):
        (folder / f"a{index}.png").write_bytes((photos / "astronaut.png").read_bytes() + bytes([index]))
    with SERVERS["openai"](models=[MODEL]) as server:
        server.vision = False
        point_role_at(monkeypatch, "emotion", "openai", server)
        monkeypatch.setenv("TAGSITE_LLM_EMOTION_MAX_PARALLEL", "1")
        with pytest.raises(CommandError, match="does not take images.*3 requests in a row failed"):
            run(folder)
        assert len(server.chat_requests()) == 3
    assert ImageEmotion.objects.filter(outcome="failed").count() == 2  # the third stopped the run, unstored
    assert Job.objects.filter(kind="emotion").get().status == "failed"


def test_requests_stay_within_the_endpoints_slots(monkeypatch, photos, tmp_path, labels):
    folder = tmp_path / "many"
    folder.mkdir()
    for index in range(6):
        shutil.copy(photos / "astronaut.png", folder / f"a{index}.png")
        (folder / f"a{index}.png").write_bytes((folder / f"a{index}.png").read_bytes() + bytes([index]))  # distinct
    with SERVERS["openai"](models=[MODEL], latency=0.2) as server:
        server.chat_rule = answers("happy")
        point_role_at(monkeypatch, "emotion", "openai", server)
        monkeypatch.setenv("TAGSITE_LLM_EMOTION_MAX_PARALLEL", "2")
        call_command("import_images", str(folder), stdout=io.StringIO(), verbosity=0)
        with open_labeller("llm") as (labeller, threads, described):
            assert threads == 2 and described["model"] == MODEL
            # more readers than slots (as several workers would be): the endpoint's slot cap holds them, not the
            # thread count (with 2 readers the cap could never be exceeded)
            summary = label_images(labeller, select_images(str(folder)), threads=6)
        assert summary.proposals == 6 and EmotionProposal.objects.count() == 6
        assert server.max_in_flight == 2
