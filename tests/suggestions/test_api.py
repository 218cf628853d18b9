"""The REST API and the pages of suggestions, with the moderators group as the only deciders."""

import pytest
from django.contrib.auth import get_user_model

from suggestions import services
from suggestions.models import ImageRun, TagMapping, TagSuggestion, UnmappedTag
from suggestions.tasks import infer_backlog
from tagsite.models import Decision, ImageTag, Job
from tagsite.services.accounts import ensure_moderators_group
from tests.suggestions.conftest import add_image

RED = (255, 0, 0)


@pytest.fixture
def queue(wd14, tmp_path):
    images = [add_image(tmp_path / "lib", f"{i}.png", RED, size=(90 + i, 90)) for i in range(3)]
    services.suggest_tags(wd14, images)
    return images


def staff_client(client, username: str, moderator: bool):
    user = get_user_model().objects.create_user(username, password="pw-long-enough", is_staff=True)
    if moderator:
        user.groups.add(ensure_moderators_group())
    client.force_login(user)
    return client, user


@pytest.mark.django_db
def test_list_the_queue_and_one_image(admin_client, queue):
    data = admin_client.get("/api/suggestions/", {"min_confidence": 0.95}).json()
    assert data["count"] == 9 and {row["tag"] for row in data["results"]} == {"long_hair", "blush", "short_hair"}
    first = admin_client.get("/api/suggestions/", {"image": queue[0].pk}).json()["results"]
    assert [row["category_name"] for row in first] == ["general"] * 4 + ["character"]
    assert first[0]["model"] == "wd-test v1" and first[0]["status"] == "pending"
    assert admin_client.get("/api/suggestions/", {"tag": "hatsune"}).json()["count"] == 3


@pytest.mark.django_db
def test_moderators_decide_and_are_audited(client, queue):
    moderator_client, moderator = staff_client(client, "mod", moderator=True)
    suggestion = TagSuggestion.objects.filter(image=queue[0], tag__name="blush").get()
    response = moderator_client.post(f"/api/suggestions/{suggestion.pk}/approve/")
    assert response.status_code == 200 and response.json()["status"] == "approved"
    assert ImageTag.objects.filter(image=queue[0], tag__name="blush", source="model").exists()
    ids = list(TagSuggestion.objects.filter(tag__name="hatsune_miku").values_list("pk", flat=True))
    response = moderator_client.post("/api/suggestions/decide/", {"ids": ids, "status": "rejected"}, "application/json")
    assert response.json() == {"approved": 0, "rejected": 3}
    response = moderator_client.post(
        "/api/suggestions/review-images/", {"images": [queue[1].pk], "threshold": 0.7}, "application/json"
    )
    assert response.json() == {"approved": 3, "rejected": 1}  # hatsune_miku was already rejected
    assert Decision.objects.filter(kind="tagsuggestion", user=moderator, via="api").count() == 8


@pytest.mark.django_db
def test_staff_without_the_group_cannot_decide(client, queue):
    staff, _ = staff_client(client, "viewer", moderator=False)
    suggestion = TagSuggestion.objects.first()
    assert staff.get("/api/suggestions/").status_code == 200
    assert staff.post(f"/api/suggestions/{suggestion.pk}/approve/").status_code == 403
    assert (
        staff.post(
            "/api/suggestions/decide/", {"ids": [suggestion.pk], "status": "approved"}, "application/json"
        ).status_code
        == 403
    )  # noqa: E501
    assert staff.post("/suggestions/unmapped/", {"ids": [1], "action": "ignore"}).status_code == 403
    suggestion.refresh_from_db()
    assert suggestion.status == "pending"


@pytest.mark.django_db
def test_openapi_schema_documents_the_endpoints(admin_client):
    schema = admin_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    for path in ["/api/suggestions/", "/api/suggestions/{id}/approve/", "/api/suggestions/decide/",
                 "/api/suggestions/review-images/", "/api/suggestions/backlog/", "/api/model-versions/",
                 "/api/unmapped-tags/"]:  # fmt: skip
        assert path in schema["paths"], path


@pytest.mark.django_db
def test_pages_render(admin_client, queue, settings, wd14, tmp_path):
    page = admin_client.get("/suggestions/", {"tag": "long"}).content.decode()
    assert page.count('class="review-card"') == 3 and "long hair" in page and "--c: 1.000" in page
    settings.SUGGESTIONS_UNMAPPED = "worklist"
    services.suggest_tags(wd14, [add_image(tmp_path / "lib", "blue.png", (0, 0, 255))])
    page = admin_client.get("/suggestions/unmapped/").content.decode()
    assert "1girl" in page and "breasts" in page
    entry = UnmappedTag.objects.get(external_tag="1girl")
    response = admin_client.post("/suggestions/unmapped/", {"ids": [entry.pk], "action": "map", "tag": "woman"})
    assert response.status_code == 302 and TagSuggestion.objects.filter(tag__name="woman").exists()
    services.decide(TagSuggestion.objects.filter(tag__name="long_hair")[:1], "rejected", None)
    page = admin_client.get("/suggestions/report/").content.decode()
    assert "long_hair" in page and ">keep<" in page


@pytest.mark.django_db
def test_report_page_shows_the_evidence_and_turns_a_label_off(admin_client, wd14, tmp_path):
    images = [add_image(tmp_path / "lib", f"{i}.png", RED, size=(90 + i, 90)) for i in range(7)]
    services.suggest_tags(wd14, images)
    services.decide(TagSuggestion.objects.filter(tag__name="simple_background"), "rejected", None)  # 7 of 7
    page = admin_client.get("/suggestions/report/").content.decode()
    assert "<th>decided at threshold</th><th>precision</th><th>lower bound</th>" in page
    assert "<td>7</td>\n        <td>0.000</td>\n        <td>0.000</td>\n        <td>0.350</td>" in page
    assert f'value="{wd14.pk}:off:simple_background"' in page and "turn off" in page
    response = admin_client.post("/suggestions/report/", {"apply": [f"{wd14.pk}:off:simple_background"]}, follow=True)
    assert "Applied 0 label thresholds, turned 1 labels off." in response.content.decode()
    wd14.refresh_from_db()
    assert wd14.disabled_labels == ["simple_background"]
    page = admin_client.get("/suggestions/report/").content.decode()
    assert "<td>off</td>" in page and f'value="{wd14.pk}:off:simple_background"' not in page


@pytest.mark.django_db
def test_moderators_start_backlog_tagging_as_a_job(client, wd14, tmp_path, django_capture_on_commit_callbacks):
    images = [add_image(tmp_path / "lib", f"{i}.png", RED, size=(90 + i, 90)) for i in range(3)]
    staff, _ = staff_client(client, "viewer", moderator=False)
    assert staff.post("/api/suggestions/backlog/", {}, "application/json").status_code == 403
    assert not Job.objects.filter(kind="suggest_tags").exists()  # (the imports above opened an auto_tag job)
    moderator, _ = staff_client(client, "mod", moderator=True)  # the same client, logged in again
    with django_capture_on_commit_callbacks() as sent:
        response = moderator.post(
            "/api/suggestions/backlog/", {"model_version": wd14.pk, "limit": 2}, "application/json"
        )
    assert response.status_code == 202 and len(sent) == 1
    job = Job.objects.get(pk=response.json()["id"])
    assert (job.kind, job.status, job.params["model_id"], job.params["limit"]) == ("suggest_tags", "queued", wd14.pk, 2)
    infer_backlog(job.pk)  # what the worker runs
    job.refresh_from_db()
    assert (job.status, job.total, job.current) == ("succeeded", 2, 2)
    assert job.counts == {"images": 2, "suggestions": 10, "held": 0, "failed": 0}
    infer_backlog(job.pk)  # redelivered: the job is no longer queued, nothing runs again
    assert Job.objects.get(pk=job.pk).finished_at == job.finished_at
    assert set(ImageRun.objects.values_list("image_id", flat=True)) == {images[0].pk, images[1].pk}
    wd14.active = False
    wd14.save()
    response = moderator.post("/api/suggestions/backlog/", {}, "application/json")
    assert response.status_code == 400 and "no active model" in str(response.json())


@pytest.mark.django_db
def test_a_backlog_job_a_killed_worker_left_running_runs_again(wd14, tmp_path):
    images = [add_image(tmp_path / "lib", f"{i}.png", RED, size=(90 + i, 90)) for i in range(2)]
    services.suggest_tags(wd14, images[:1])  # what the killed worker stored before it died
    job = Job.objects.create(kind="suggest_tags", params={"model_id": wd14.pk}, status="running", current=1, total=2)
    infer_backlog(job.pk)  # the redelivered task
    job.refresh_from_db()
    assert (job.status, job.current, job.total) == ("succeeded", 1, 1)
    assert ImageRun.objects.filter(model_version=wd14).count() == 2
    assert TagSuggestion.objects.filter(image=images[0]).count() == 5  # nothing stored twice


@pytest.mark.django_db
@pytest.mark.parametrize("action", [None, "", "bogus", "IGNORE"])
def test_the_worklist_refuses_a_missing_or_unknown_action(admin_client, wd14, tmp_path, settings, action):
    settings.SUGGESTIONS_UNMAPPED = "worklist"
    services.suggest_tags(wd14, [add_image(tmp_path / "lib", "blue.png", (0, 0, 255))])
    ids = list(UnmappedTag.objects.values_list("pk", flat=True))
    form = {"ids": ids, **({"action": action} if action is not None else {})}
    page = admin_client.post("/suggestions/unmapped/", form, follow=True).content.decode()
    assert "action: " in page and 'class="message error"' in page
    assert UnmappedTag.objects.count() == len(ids) and not TagMapping.objects.exists()
    with pytest.raises(ValueError, match="unknown action 'bogus': choose one of map, same_name, ignore"):
        services.resolve_worklist(UnmappedTag.objects.all(), "bogus")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url, field",
    [
        ("/api/suggestions/?image=abc", "image"),
        ("/api/suggestions/?image=0", "image"),
        ("/api/suggestions/?min_confidence=abc", "min_confidence"),
        ("/api/suggestions/?max_confidence=nan", "max_confidence"),
        ("/api/suggestions/?min_confidence=2", "min_confidence"),
        ("/api/suggestions/?status=bogus", "status"),
    ],
)
def test_bad_api_query_parameters_are_a_400(admin_client, queue, url, field):
    response = admin_client.get(url)
    assert response.status_code == 400 and field in response.json()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url, field",
    [
        ("/suggestions/?min_confidence=abc", "min_confidence"),
        ("/suggestions/?max_confidence=inf", "max_confidence"),
        ("/suggestions/?status=bogus", "status"),
        ("/suggestions/report/?target=abc", "target"),
    ],
)
def test_bad_page_query_parameters_are_a_message(admin_client, queue, url, field):
    response = admin_client.get(url)
    assert response.status_code == 200
    assert f'<div class="message error">{field}: ' in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "/api/suggestions/?model=wd%00test",
        "/api/suggestions/?tag=long%00",
        "/api/unmapped-tags/?source=dan%00booru",
        "/suggestions/?model=wd%00test",
        "/suggestions/unmapped/?source=dan%00booru",
        "/suggestions/report/?model=wd%00test",
    ],
)
def test_a_nul_in_a_query_parameter_is_a_400(admin_client, queue, url):
    """The site's middleware refuses NUL (PostgreSQL text cannot hold it) before any page or API sees it."""
    assert admin_client.get(url).status_code == 400


@pytest.mark.django_db
@pytest.mark.parametrize("value", ["", "1", "abc:0.5:blush", "{pk}:high:blush", "{pk}:nan:blush", "{pk}:2:blush",
                                   "{pk}:0.5:", "{pk}:0.5:blu%00sh"])  # fmt: skip
def test_a_malformed_threshold_to_apply_is_a_message(admin_client, wd14, value):
    value = value.format(pk=wd14.pk).replace("%00", "\x00")
    response = admin_client.post("/suggestions/report/", {"apply": [f"{wd14.pk}:0.6:smile", value]}, follow=True)
    assert response.status_code == 200 and "Nothing applied: " in response.content.decode()
    wd14.refresh_from_db()
    assert wd14.tag_thresholds == {}


@pytest.mark.django_db
def test_the_report_says_which_label_file_is_missing(admin_client, wd14, tmp_path):
    services.suggest_tags(wd14, [add_image(tmp_path / "lib", "red.png", RED)])
    wd14.labels_file = str(tmp_path / "gone" / "selected_tags.csv")
    wd14.save(update_fields=["labels_file"])
    response = admin_client.get("/suggestions/report/")
    page = response.content.decode()
    assert response.status_code == 200 and "label file cannot be read" in page and "gone/selected_tags.csv" in page
