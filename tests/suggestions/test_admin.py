"""Admin of suggestions: every changelist renders; moderators, not plain staff, resolve worklist labels."""

import pytest
from django.contrib.auth.models import Permission

from suggestions import services
from suggestions.models import TagMapping, TagSuggestion, UnmappedTag
from tests.suggestions.conftest import add_image
from tests.suggestions.test_api import staff_client


@pytest.mark.django_db
def test_every_suggestions_changelist_renders(admin_client, wd14, tmp_path, settings):
    settings.SUGGESTIONS_UNMAPPED = "worklist"  # held predictions and runs to list
    services.suggest_tags(wd14, [add_image(tmp_path / "lib", "blue.png", (0, 0, 255))])
    services.decide(TagSuggestion.objects.all(), "approved", None, via="admin")  # an audit to list
    for model in ["suggestions/mlmodelversion", "suggestions/tagmapping", "suggestions/unmappedtag",
                  "suggestions/heldprediction", "suggestions/imagerun", "suggestions/tagsuggestion",
                  "tagsite/decision", "tagsite/producer", "tagsite/autoapproverule"]:  # fmt: skip
        for query in ["", "?q=blue", "?o=1"]:
            url = f"/admin/{model}/{query}"
            assert admin_client.get(url).status_code == 200, url
    page = admin_client.get("/admin/suggestions/heldprediction/", {"q": "1girl"}).content.decode()
    assert "1girl" in page and "Add held prediction" not in page


@pytest.fixture
def worklist(wd14, tmp_path, settings):
    settings.SUGGESTIONS_UNMAPPED = "worklist"
    services.suggest_tags(wd14, [add_image(tmp_path / "lib", "blue.png", (0, 0, 255))])
    return list(UnmappedTag.objects.values_list("pk", flat=True))


@pytest.mark.django_db
@pytest.mark.parametrize("action", ["map_same_name", "ignore"])
def test_moderators_run_the_worklist_admin_actions(client, worklist, action):
    moderator, _ = staff_client(client, "mod", moderator=True)
    response = moderator.post("/admin/suggestions/unmappedtag/", {"action": action, "_selected_action": worklist})
    assert response.status_code == 302
    assert not UnmappedTag.objects.exists() and TagMapping.objects.count() == len(worklist)


@pytest.mark.django_db
def test_plain_staff_cannot_run_the_worklist_admin_actions(client, worklist):
    staff, user = staff_client(client, "viewer", moderator=False)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_unmappedtag", "change_unmappedtag"]))
    assert staff.get("/admin/suggestions/unmappedtag/").status_code == 200
    for action in ("map_same_name", "ignore"):
        staff.post("/admin/suggestions/unmappedtag/", {"action": action, "_selected_action": worklist})
    assert UnmappedTag.objects.count() == len(worklist) and not TagMapping.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "value"), [("thresholds", '{"general": "x"}'), ("thresholds", "[0.4]"), ("tag_thresholds", '{"a": 2}')]
)
def test_admin_refuses_thresholds_that_would_break_inference(admin_client, wd14, field, value):
    form = {"name": wd14.name, "version": wd14.version, "label_source": wd14.label_source, "active": "on",
            "thresholds": '{"general": 0.5}', "tag_thresholds": '{"long_hair": 0.7}', field: value}  # fmt: skip
    url = f"/admin/suggestions/mlmodelversion/{wd14.pk}/change/"
    response = admin_client.post(url, form)
    assert response.status_code == 200 and response.context["adminform"].form.errors[field]
    wd14.refresh_from_db()
    assert wd14.thresholds == {"general": 0.35, "character": 0.85} and wd14.tag_thresholds == {}
    assert admin_client.post(url, {**form, field: "{}"}).status_code == 302  # a valid one saves
