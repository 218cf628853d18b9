"""The categorisation API: the page's permissions, filters, decisions and LLM runs, over REST."""

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import Resolver404, resolve

from categorization import tasks
from categorization.models import CategoryProposal, ExtendedCategory
from categorization.services import set_category
from tagsite.models import Job, Tag
from tagsite.services.accounts import ensure_moderators_group
from tests.categorization.conftest import category_of, chat_producer, make_tags
from tests.categorization.test_page import propose

JSON = "application/json"


def login(client, username: str, *, staff: bool = True, moderator: bool = False, viewer: bool = False):
    user = User.objects.create_user(username, password="pw-long-enough", is_staff=staff)
    if moderator:
        user.groups.add(ensure_moderators_group())
    if viewer:
        user.user_permissions.add(Permission.objects.get(codename="view_extendedcategory"))
    client.force_login(user)
    return user


@pytest.fixture
def moderator(client):
    login(client, "mod", moderator=True)
    return client


def test_anonymous_and_non_staff_are_refused(client):
    assert client.get("/api/categories/").status_code in (401, 403)
    assert client.post("/api/tag-categories/set/", {"tags": [1], "category": None}, JSON).status_code in (401, 403)
    login(client, "plain", staff=False, moderator=True)  # the group alone does not open the API
    assert client.get("/api/category-proposals/").status_code == 403


def test_staff_need_the_page_permission_and_read_only_without_the_group(client):
    (tag,) = make_tags("hat")
    proposal = propose(tag, "08_Attire_Acc")
    login(client, "staff")
    assert client.get("/api/tag-categories/").status_code == 403  # as on the page
    client.logout()
    login(client, "viewer", viewer=True)
    assert client.get("/api/tag-categories/").status_code == 200
    assert client.get("/api/category-proposals/").status_code == 200
    refused = [
        client.post("/api/tag-categories/set/", {"tags": [tag.pk], "category": "08_Attire_Acc"}, JSON),
        client.post(f"/api/category-proposals/{proposal.pk}/accept/"),
        client.post("/api/category-proposals/reject/", {"ids": [proposal.pk]}, JSON),
        client.post("/api/categories/run/", {"limit": 5}, JSON),
    ]
    assert [response.status_code for response in refused] == [403] * 4
    assert category_of(tag) is None and not Job.objects.exists()


def test_categories_with_tag_counts(moderator):
    set_category(
        [tag.pk for tag in make_tags("hat", "scarf")], ExtendedCategory.objects.get(code="08_Attire_Acc"), None
    )
    categories = moderator.get("/api/categories/").json()
    assert len(categories) == 22 and categories[0]["code"] == "00_Subject_Count"
    attire = moderator.get("/api/categories/08_Attire_Acc/").json()
    assert attire["tag_count"] == 2 and attire["group"] in {"identity", "context", "technical"}
    assert set(attire) == {"code", "name", "description", "group", "group_name", "tag_count"}


def test_tags_filtered_as_on_the_page(moderator):
    eyes, hat, sky = make_tags("blue_eyes", "hat", "sky")
    proposal = propose(eyes, "03_Body_Face", 0.9)
    set_category([hat.pk], ExtendedCategory.objects.get(code="08_Attire_Acc"), None)
    names = lambda **params: [row["name"] for row in moderator.get("/api/tag-categories/", params).json()["results"]]  # noqa: E731
    assert names() == ["blue_eyes", "hat", "sky"]
    assert names(category="08_Attire_Acc") == ["hat"]
    assert names(state="uncategorised") == ["blue_eyes", "sky"]
    assert names(state="proposal") == ["blue_eyes"]
    assert names(state="uncategorised", q="SK") == ["sky"]
    row = moderator.get(f"/api/tag-categories/{eyes.pk}/").json()
    assert row["category"] is None
    assert row["pending_proposal"] == {"id": proposal.pk, "category": "03_Body_Face", "confidence": 0.9, "model": "m"}
    assert moderator.get("/api/tag-categories/", {"state": "nonsense"}).status_code == 400


def test_set_and_clear_categories_settles_proposals(moderator):
    a, b = make_tags("a_tag", "b_tag")
    agreed, overruled = propose(a, "13_Object"), propose(b, "02_Body_Hair")
    response = moderator.post("/api/tag-categories/set/", {"tags": [a.pk, b.pk], "category": "13_Object"}, JSON)
    assert response.status_code == 200 and response.json() == {"count": 2}
    assert set(Tag.objects.values_list("category_link__category__code", flat=True)) == {"13_Object"}
    assert CategoryProposal.objects.get(pk=agreed.pk).status == "approved"
    assert CategoryProposal.objects.get(pk=overruled.pk).status == "rejected"
    moderator.post("/api/tag-categories/set/", {"tags": [b.pk], "category": None}, JSON)
    assert category_of(b) is None
    bad = moderator.post("/api/tag-categories/set/", {"tags": [a.pk], "category": "99_Nope"}, JSON)
    assert bad.status_code == 400 and "category" in bad.json()
    assert moderator.post("/api/tag-categories/set/", {"tags": [], "category": None}, JSON).status_code == 400


def test_proposals_list_filters_and_single_decisions(moderator):
    a, b, c = make_tags("a_tag", "b_tag", "c_tag")
    first, second = propose(a, "13_Object"), propose(b, "14_Setting")
    CategoryProposal.objects.create(tag=c, category=first.category, confidence=0.5, producer=chat_producer("other"))
    ids = lambda **params: {row["id"] for row in moderator.get("/api/category-proposals/", params).json()["results"]}  # noqa: E731
    assert len(ids()) == 3 and ids(category="14_Setting") == {second.pk} and len(ids(model="m")) == 2
    response = moderator.post(f"/api/category-proposals/{first.pk}/accept/")
    assert response.status_code == 200
    assert response.json()["status"] == "approved" and response.json()["reviewer"] == "mod"
    assert category_of(a) == "13_Object"
    assert moderator.post(f"/api/category-proposals/{second.pk}/reject/").json()["status"] == "rejected"
    assert category_of(b) is None
    assert moderator.post(f"/api/category-proposals/{second.pk}/accept/").status_code == 409
    assert ids(status="pending") == {CategoryProposal.objects.get(tag=c).pk}


def test_bulk_accept_applies_categories_and_bulk_reject(moderator):
    tags = make_tags("a_tag", "b_tag", "c_tag")
    proposals = [propose(tag, code) for tag, code in zip(tags, ["13_Object", "14_Setting", "09_Action"], strict=True)]
    accepted = moderator.post("/api/category-proposals/accept/", {"ids": [p.pk for p in proposals[:2]]}, JSON)
    assert accepted.status_code == 200 and accepted.json() == {"count": 2}
    codes = dict(Tag.objects.values_list("name", "category_link__category__code"))
    assert codes == {"a_tag": "13_Object", "b_tag": "14_Setting", "c_tag": None}
    rejected = moderator.post("/api/category-proposals/reject/", {"ids": [p.pk for p in proposals]}, JSON)
    assert rejected.json() == {"count": 1}  # the two accepted ones stay accepted
    assert dict(CategoryProposal.objects.values_list("tag__name", "status")) == {
        "a_tag": "approved", "b_tag": "approved", "c_tag": "rejected"
    }  # fmt: skip


def test_start_run_queues_a_job_and_sends_the_task(moderator, monkeypatch, django_capture_on_commit_callbacks):
    sent = []
    monkeypatch.setattr(tasks.categorize_tags_task, "delay", sent.append)
    with django_capture_on_commit_callbacks(execute=True):
        response = moderator.post("/api/categories/run/", {"limit": 7}, JSON)
    assert response.status_code == 202
    job = Job.objects.get(pk=response.json()["id"])
    assert job.kind == "categorize" and job.status == "queued" and job.params == {"limit": 7, "batch_size": 7}
    assert job.created_by.username == "mod" and sent == [job.pk]
    assert moderator.get(f"/api/jobs/{job.pk}/").json()["status"] == "queued"
    assert moderator.post("/api/categories/run/", {"limit": 0}, JSON).status_code == 400


@pytest.mark.parametrize("code", ["nope", "x" * 300, "%C3%A9t%C3%A9", "%FF", "a.b", "a%2Fb"])
def test_an_unknown_or_odd_category_code_is_a_404(moderator, code):
    assert moderator.get(f"/api/categories/{code}/").status_code == 404


def test_a_category_code_with_nul_does_not_route():
    """Never to PostgreSQL, which cannot compare text with NUL (whatever the middleware does first)."""
    with pytest.raises(Resolver404):
        resolve("/api/categories/a\x00b/")
    assert resolve("/api/categories/03_Body_Face/").kwargs == {"code": "03_Body_Face"}
