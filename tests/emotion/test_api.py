"""The emotion API: the CSV download, relabelling and its permission, a run through a real Celery worker, and the
generic review API on the emotion kind."""

import csv
import html
import io
import re

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from emotion.models import EmotionProposal, ImageEmotion
from tagsite.celery import app
from tagsite.models import Job
from tagsite.services.accounts import ensure_moderators_group
from tests.conftest import wait_for


def queue_of(task_name: str) -> str:
    return app.amqp.router.route({}, task_name)["queue"].name


def test_the_local_backend_runs_on_the_gpu_queue_and_chat_backends_on_llm():
    assert queue_of("emotion.tasks.label_images_local") == "gpu"
    assert queue_of("emotion.tasks.label_images_llm") == "llm"


@pytest.fixture
def client(django_user_model):
    user = django_user_model.objects.create_user("mod", password="pw", is_staff=True)
    ensure_moderators_group()
    user.groups.add(Group.objects.get(name="moderators"))
    api = APIClient()
    api.force_authenticate(user)
    return api


@pytest.mark.django_db
def test_export_csv_relabel_and_the_review_api(client, folder, django_user_model):
    call_command("auto_tag_images", str(folder), stdout=io.StringIO(), verbosity=0)
    answer = client.get("/api/emotions/export.csv?all=1")
    assert answer.status_code == 200 and answer["Content-Type"].startswith("text/csv")
    assert 'filename="llm_labels.csv"' in answer["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(answer.streaming_content).decode())))
    assert rows[0] == ["filename", "path", "emotion", "confidence"] and len(rows) == 4
    approved = b"".join(client.get("/api/emotions/export.csv").streaming_content).decode()
    assert list(csv.reader(io.StringIO(approved))) == [rows[0]]

    astronaut = EmotionProposal.objects.get(image__path__endswith="astronaut.png")
    answer = client.post(
        "/api/emotions/relabel/", {"ids": [astronaut.pk], "label": "surprise", "approve": True}, format="json"
    )
    assert answer.status_code == 200 and answer.json()["relabelled"] == 1 and answer.json()["changed"] == [astronaut.pk]
    assert (
        client.post("/api/emotions/relabel/", {"ids": [astronaut.pk], "label": "bored"}, format="json").status_code
        == 400
    )

    listing = client.get("/api/review/emotion/?status=approved").json()["results"]
    assert [row["subject"]["label"] for row in listing] == ["surprise"]
    assert listing[0]["subject"]["proposed_label"] == "happy" and len(listing[0]["subject"]["face"]["box"]) == 4
    assert set(listing[0]["subject"]["probabilities"]) == {
        "angry",
        "disgust",
        "fear",
        "happy",
        "sad",
        "surprise",
        "neutral",
    }
    refused = client.post("/api/emotions/run/", {"backend": "llm", "chat_input": "crop"}, format="json")
    assert refused.status_code == 400 and "chat_input" in refused.json()  # faces or image
    back = client.post("/api/review/emotion/decide/", {"ids": [astronaut.pk], "status": "pending"}, format="json")
    assert back.json()["changed"] == [astronaut.pk]

    hub = Client()
    hub.force_login(django_user_model.objects.get(username="mod"))
    page = hub.get("/review/").content.decode()
    assert '<a href="/emotion/">Emotion labels</a>' in page  # the hub links the kind's screen
    image = astronaut.image_id
    row = re.search(
        r'<table class="stages" id="image-proposals">(.*?)</table>', hub.get(f"/images/{image}/").content.decode()
    )
    assert row, "pending again: listed on the image page"
    cells = [html.unescape(cell) for cell in re.findall(r"<td>(.*?)</td>", row.group(1))]
    assert cells[0] == '<a href="/emotion/">emotion labels</a>'
    assert re.fullmatch(r"surprise \(the model said happy 1\.00\) · largest face · then \w+ 0\.\d\d", cells[1]), cells

    onlooker = django_user_model.objects.create_user("look", is_staff=True)
    onlooker.user_permissions.add(Permission.objects.get(codename="view_emotionproposal"))
    looker = APIClient()
    looker.force_authenticate(onlooker)
    assert looker.get("/api/emotions/export.csv").status_code == 200
    refused = looker.post("/api/emotions/relabel/", {"ids": [astronaut.pk], "label": "sad"}, format="json")
    assert refused.status_code == 403 and "emotion.review_emotion" in refused.json()["detail"]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_run_through_the_worker_labels_library_images(celery_worker, client, folder):
    call_command("import_images", str(folder), stdout=io.StringIO(), verbosity=0)
    answer = client.post("/api/emotions/run/", {"backend": "local"}, format="json")
    assert answer.status_code == 202
    job = Job.objects.get(pk=answer.json()["id"])
    wait_for(lambda: Job.objects.get(pk=job.pk).finished, timeout=120)
    job.refresh_from_db()
    assert job.status == "succeeded", (job.message, job.errors)
    assert job.counts == {"labelled": 3, "no_face": 1} and job.params["backend"] == "local"
    assert ImageEmotion.objects.count() == 4 and EmotionProposal.objects.count() == 4


@pytest.mark.django_db
def test_moderators_extend_the_synonyms_and_floors_in_admin(django_user_model, labels):
    """The issue's "a table in admin, extendable": a moderator (not a superuser) adds a synonym and sets a floor."""
    from emotion.models import EmotionLabel, EmotionSynonym

    moderator = django_user_model.objects.create_user("mod", password="pw", is_staff=True)
    moderator.groups.add(ensure_moderators_group())
    browser = Client()
    browser.force_login(moderator)
    neutral = EmotionLabel.objects.get(name="neutral")
    added = browser.post("/admin/emotion/emotionsynonym/add/", {"word": "bored", "label": neutral.pk})
    assert added.status_code == 302 and EmotionSynonym.objects.get(word="bored").label == neutral
    changed = browser.post(
        f"/admin/emotion/emotionlabel/{neutral.pk}/change/",
        {
            "position": neutral.position,
            "min_confidence": "0.8",
            "synonyms-TOTAL_FORMS": "0",
            "synonyms-INITIAL_FORMS": "0",
            "synonyms-MIN_NUM_FORMS": "0",
            "synonyms-MAX_NUM_FORMS": "1000",
        },
    )
    assert changed.status_code == 302 and EmotionLabel.objects.get(pk=neutral.pk).min_confidence == 0.8
    assert browser.get("/admin/emotion/imageemotion/").status_code == 200  # what each run found
