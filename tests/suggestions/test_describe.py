"""The VLM stages against the loopback OpenAI-compatible server, which answers from each image's mean colour: the
right image reaches the right request (EXIF-rotated, downscaled), answers become proposals, faults are re-asked or
recorded, the slot cap holds."""

import json

import pytest

from suggestions.models import MLModelVersion, PromptProfile, TagSuggestion, TextProposal, UnmappedTag
from suggestions.services.describe import DescribeOptions, describe_images, wrong_language
from tagsite.models import AutoApproveRule, Decision, Image, ImageStage, Producer, Proposal, Tag, TagAlias
from tagsite.review import services as review
from tagsite.services.ingest import ingest_paths
from tagsite.services.writeback import held_fields
from tests.factories import make_jpeg
from tests.llm_server import OpenAITestServer, colour_rule, request_schema
from tests.suggestions.conftest import add_image

pytestmark = pytest.mark.django_db
MODEL = "vlm-test"
STAGE_ROLES = ("title", "caption", "keywords", "description")


def point_stages_at(monkeypatch, server, max_parallel: int = 4, timeout: float | None = None) -> None:
    for role in STAGE_ROLES:
        prefix = f"TAGSITE_LLM_{role.upper()}_"
        monkeypatch.setenv(prefix + "URL", server.url)
        monkeypatch.setenv(prefix + "MODEL", MODEL)
        monkeypatch.setenv(prefix + "MAX_PARALLEL", str(max_parallel))
        if timeout:
            monkeypatch.setenv(prefix + "TIMEOUT", str(timeout))


@pytest.fixture
def vlm(monkeypatch):
    with OpenAITestServer(models=[MODEL]) as server:
        server.chat_rule = colour_rule
        server.retry_after = 0
        point_stages_at(monkeypatch, server)
        yield server


def stage_of(body: dict) -> str:
    return next(iter(request_schema(body)["properties"]))


def test_each_image_reaches_its_own_requests_rotated_and_downscaled(vlm, tmp_path):
    red = add_image(tmp_path, "red.png", (220, 30, 30))
    blue = add_image(tmp_path, "blue.png", (30, 30, 220))
    tall = make_jpeg(tmp_path / "green.jpg", size=(200, 100), color=(30, 180, 30), orientation=6)  # shown 100x200
    (green,) = ingest_paths([str(tall)])
    summary = describe_images([red, blue, green], DescribeOptions(long_side=64))
    assert (summary.described, summary.failed) == (3, 0)
    assert len(vlm.chat_requests()) == 12 and len(vlm.images) == 12
    assert sorted({image.size for image in vlm.images}) == [(32, 64), (64, 64)]  # the rotated one is tall
    for image, colour in ((red, "red"), (blue, "blue"), (green, "green")):
        texts = {p.field: p.text for p in TextProposal.objects.filter(image=image)}
        assert set(texts) == {"title", "caption", "description"}
        assert all(colour in text for text in texts.values()), texts
        keywords = TagSuggestion.objects.filter(image=image).values_list("tag__name", flat=True)
        assert set(keywords) == {colour, f"{colour}_picture"}
        assert ImageStage.objects.get(image=image, stage="describe").status == "done"
    proposal = TextProposal.objects.filter(image=red).first()
    assert proposal.status == Proposal.Status.PENDING
    assert proposal.producer.kind == Producer.Kind.CHAT and proposal.producer.prompt_version == "default-v1"
    version = MLModelVersion.objects.get(kind=MLModelVersion.Kind.VLM)
    assert (version.name, version.version, version.active) == (MODEL, "default-v1", False)


def test_a_second_run_skips_what_is_done_and_overwrite_asks_again(vlm, tmp_path):
    image = add_image(tmp_path, "red.png", (220, 30, 30))
    describe_images([image], DescribeOptions(stages=("caption",)))
    assert describe_images([image], DescribeOptions(stages=("caption",))).skipped == 1
    assert len(vlm.chat_requests()) == 1
    caption = TextProposal.objects.get(image=image, field="caption")
    review.decide(kind="textproposal", ids=[caption.pk], status="approved", via="page")
    assert describe_images([image], DescribeOptions(stages=("caption",), overwrite=True)).described == 1
    assert TextProposal.objects.filter(image=image, field="caption").count() == 2  # the approved one and a new one


def test_faults_are_retried_or_re_asked_and_every_image_is_described(vlm, tmp_path):
    images = [add_image(tmp_path, f"{i}.png", (220, 30 + i, 30)) for i in range(3)]
    vlm.inject("429", "500", "invalid_json", "ok", "truncated")  # one request at a time: each fault hits a new one
    summary = describe_images(images, DescribeOptions(max_workers=1))
    assert (summary.described, summary.failed) == (3, 0)
    assert sum(counts["re-asked"] for counts in summary.stages.values()) == 2
    assert TextProposal.objects.count() == 9


def test_a_request_past_the_timeout_is_retried(monkeypatch, tmp_path):
    with OpenAITestServer(models=[MODEL], hang_seconds=3) as server:
        server.chat_rule = colour_rule
        point_stages_at(monkeypatch, server, timeout=1)
        image = add_image(tmp_path, "red.png", (220, 30, 30))
        server.inject("hang")
        summary = describe_images([image], DescribeOptions(stages=("title",)))
    assert summary.described == 1 and TextProposal.objects.get().text.startswith("A red")


def test_off_schema_empty_and_oversized_answers(vlm, tmp_path):
    image = add_image(tmp_path, "red.png", (220, 30, 30))
    answers = {"caption": [{"words": "no caption key"}], "keywords": [{"keywords": []}, {"keywords": []}]}

    def rule(body):
        stage = stage_of(body)
        if answers.get(stage):
            return answers[stage].pop(0)
        if stage == "description":
            return {"description": "x" * 5000}  # longer than the profile allows, twice
        return colour_rule(body)

    vlm.chat_rule = rule
    records = []
    options = DescribeOptions(stages=("caption", "keywords", "description"))
    summary = describe_images([image], options, on_image=records.append)
    assert summary.stages["caption"]["ok"] == 1 and summary.stages["caption"]["re-asked"] == 1
    assert summary.stages["keywords"]["failed"] == 1 and summary.stages["description"]["failed"] == 1
    assert summary.stages["keywords"]["re-asked"] == 1 and (summary.partial, summary.failed) == (1, 0)
    keywords = records[0]["stages"]["keywords"]  # the audit says how often a failed stage was asked, and how long
    assert keywords["attempts"] == 2 and keywords["seconds"] > 0 and keywords["error"].endswith("(asked twice)")
    assert records[0]["status"] == "partial" and not keywords["error"].startswith("keywords")
    stage = ImageStage.objects.get(image=image, stage="describe")
    assert stage.status == "failed" and "keywords: " in stage.error and "non-empty (asked twice)" in stage.error
    assert "description: " in stage.error and "too long" in stage.error and len(stage.error) < 600
    assert list(TextProposal.objects.values_list("field", flat=True)) == ["caption"]


def test_five_hundred_keywords_keep_the_profiles_limit(vlm, tmp_path):
    image = add_image(tmp_path, "red.png", (220, 30, 30))
    vlm.chat_rule = lambda body: {"keywords": [f"word {i}" for i in range(500)]}
    records = []
    summary = describe_images([image], DescribeOptions(stages=("keywords",), max_keywords=7), on_image=records.append)
    assert summary.described == 1 and TagSuggestion.objects.filter(image=image).count() == 7
    assert records[0]["stages"]["keywords"]["notes"] == ["kept the first 7 of 500 keywords"]
    assert request_schema(vlm.chat_requests()[0])["properties"]["keywords"]["maxItems"] == 7


def test_a_caption_in_the_wrong_language_is_asked_again(vlm, tmp_path):
    image = add_image(tmp_path, "red.png", (220, 30, 30))
    answers = [{"caption": "Красная картинка на белом фоне"}]
    vlm.chat_rule = lambda body: answers.pop(0) if answers else colour_rule(body)
    summary = describe_images([image], DescribeOptions(stages=("caption",)))
    assert summary.stages["caption"]["re-asked"] == 1
    assert TextProposal.objects.get().text.startswith("A red picture")
    assert "not usable: the answer is not in English" in json.dumps(vlm.chat_requests()[1])
    assert wrong_language("Ein rotes Bild", "de") == "" and wrong_language("赤い絵です", "en")


def test_a_caption_in_another_latin_script_language_is_asked_again(vlm, tmp_path):
    image = add_image(tmp_path, "red.png", (220, 30, 30))
    answers = [{"caption": "Ein rotes Auto steht vor einem Haus mit der Tür"}]
    vlm.chat_rule = lambda body: answers.pop(0) if answers else colour_rule(body)
    summary = describe_images([image], DescribeOptions(stages=("caption",)))
    assert summary.stages["caption"]["re-asked"] == 1 and TextProposal.objects.get().text.startswith("A red")
    assert "the answer is not in English (it reads as German)" in json.dumps(vlm.chat_requests()[1])
    assert wrong_language("Une voiture rouge garée devant une maison", "en")
    for english in ("A view of the Place de la Concorde at dusk", "red car, street, Haus", "Die Hard poster"):
        assert wrong_language(english, "en") == "", english
    assert wrong_language("Ein rotes Auto steht vor einem Haus", "de") == ""


def test_keywords_go_through_aliases_and_the_worklist(vlm, tmp_path, settings):
    image = add_image(tmp_path, "red.png", (220, 30, 30))
    crimson = Tag.objects.create(name="crimson", display_name="crimson")
    TagAlias.objects.create(antecedent="red", tag=crimson)
    describe_images([image], DescribeOptions(stages=("keywords",)))
    assert set(TagSuggestion.objects.values_list("tag__name", flat=True)) == {"crimson", "red_picture"}
    settings.SUGGESTIONS_UNMAPPED = "worklist"
    blue = add_image(tmp_path, "blue.png", (30, 30, 220))
    describe_images([blue], DescribeOptions(stages=("keywords",)))
    assert set(UnmappedTag.objects.values_list("source", "external_tag")) == {("vlm", "blue"), ("vlm", "blue picture")}


def test_a_rule_for_any_producer_never_approves_vlm_keywords_only_one_naming_the_vlm_does(vlm, tmp_path):
    image = add_image(tmp_path, "red.png", (220, 30, 30))
    rule = {"kind": "tagsuggestion", "min_confidence": 0.9, "active": True}
    AutoApproveRule.objects.create(name="sure tagger labels", producer=None, **rule)  # meant for WD14 probabilities
    describe_images([image], DescribeOptions(stages=("keywords",)))
    assert set(TagSuggestion.objects.values_list("status", flat=True)) == {"pending"}  # ranks, not probabilities
    AutoApproveRule.objects.create(name="this vlm", producer=MLModelVersion.objects.get(kind="vlm").producer, **rule)
    blue = add_image(tmp_path, "blue.png", (30, 30, 220))
    describe_images([blue], DescribeOptions(stages=("keywords",)))
    (approved,) = TagSuggestion.objects.filter(image=blue, status="auto_approved")  # the first keyword: rank 1.0
    assert approved.tag.name == "blue"
    assert Decision.objects.get(kind="tagsuggestion", object_id=approved.pk).rule.name == "this vlm"


def test_two_step_asks_keywords_and_title_with_the_caption(vlm, tmp_path):
    image = add_image(tmp_path, "blue.png", (30, 30, 220))
    describe_images([image], DescribeOptions(two_step=True))
    order = [stage_of(body) for body in vlm.chat_requests()]
    assert order[0] == "caption" and sorted(order) == sorted(STAGE_ROLES)
    for body in vlm.chat_requests():
        context = "The image's caption, for context: A blue picture" in json.dumps(body)
        assert context == (stage_of(body) in ("keywords", "title"))


def test_requests_in_flight_stay_within_the_endpoints_slots(monkeypatch, tmp_path):
    with OpenAITestServer(models=[MODEL], latency=0.05) as server:
        server.chat_rule = colour_rule
        point_stages_at(monkeypatch, server, max_parallel=2)
        images = [add_image(tmp_path, f"{i}.png", (30, 30 + i, 220)) for i in range(4)]
        summary = describe_images(images, DescribeOptions(max_workers=6))
    assert summary.described == 4 and server.max_in_flight == 2


def test_an_unreadable_image_fails_alone(vlm, tmp_path):
    good = add_image(tmp_path, "red.png", (220, 30, 30))
    gone = add_image(tmp_path, "gone.png", (30, 30, 220))
    (tmp_path / "gone.png").unlink()
    summary = describe_images([good, gone], DescribeOptions(stages=("title",)))
    assert (summary.described, summary.failed) == (1, 1)
    assert "cannot read the image" in ImageStage.objects.get(image=gone, stage="describe").error


def test_approving_a_text_stores_it_and_taking_it_back_restores_the_old_one(vlm, tmp_path):
    image = add_image(tmp_path, "red.png", (220, 30, 30))
    Image.objects.filter(pk=image.pk).update(title="Typed by hand")
    describe_images([image], DescribeOptions(stages=("title", "description")))
    title, description = TextProposal.objects.order_by("field").filter(field__in=["title", "description"])[::-1]
    review.decide(kind="textproposal", ids=[title.pk, description.pk], status="approved", via="page")
    image.refresh_from_db()
    assert image.title.startswith("A red picture") and image.description.startswith("A red picture")
    assert held_fields([image.pk])[image.pk]["title"] == [image.title]
    review.decide(kind="textproposal", ids=[title.pk], status="rejected", via="page")
    image.refresh_from_db()
    assert image.title == "Typed by hand"


def test_a_profile_edit_bumps_its_version_and_producer():
    profile = PromptProfile.objects.get(name="travel")
    assert set(PromptProfile.objects.values_list("name", flat=True)) >= {"default", "travel", "studio", "booru"}
    profile.description = "only the note changed"
    profile.save()
    assert profile.label == "travel-v1"
    profile.caption_prompt += " Mention the season."
    profile.save()
    assert PromptProfile.objects.get(name="travel").label == "travel-v2"


def test_a_cancelled_run_sends_no_further_requests_and_approves_nothing(monkeypatch, tmp_path):
    from django.utils import timezone

    from tagsite.models import Decision, Job
    from tagsite.services.jobs import create_job, run_job

    with OpenAITestServer(models=[MODEL], latency=0.05) as server:
        server.chat_rule = colour_rule
        point_stages_at(monkeypatch, server)
        images = [add_image(tmp_path, f"{i}.png", (220, 30 + i, 30)) for i in range(8)]
        job = create_job("describe_images")
        cancel = lambda record: Job.objects.filter(pk=job.pk).update(cancel_requested_at=timezone.now())  # noqa: E731
        with run_job(job) as progress:
            progress.interval = 0  # look for the cancel at every image
            options = DescribeOptions(stages=("title",), auto_approve=True, max_workers=1)
            describe_images(images, options, progress, on_image=cancel)
    job.refresh_from_db()
    assert job.status == "cancelled" and job.current == 1
    assert len(server.chat_requests()) <= 3  # the one done, at most the two already open
    assert not Decision.objects.exists() and TextProposal.objects.filter(status="pending").count() == 1


@pytest.mark.parametrize("dialect", ["json_object", "none"])
def test_the_stages_work_in_every_structured_output_dialect(vlm, tmp_path, dialect):
    vlm.dialect = dialect
    image = add_image(tmp_path, "green.png", (30, 180, 30))
    assert describe_images([image], DescribeOptions()).described == 1
    assert all(text.startswith("A green picture") for text in TextProposal.objects.values_list("text", flat=True))
    forms = {(body.get("response_format") or {}).get("type") for body in vlm.chat_requests()}
    assert forms == {"json_object" if dialect == "json_object" else None}
