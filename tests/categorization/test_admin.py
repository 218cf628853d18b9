"""Admin: the registry is editable; proposals are decided in bulk by moderators only, never by editing them."""

from django.contrib.auth.models import Permission, User

from categorization.models import CategoryProposal, ExtendedCategory
from tagsite.models import LLMEndpoint
from tests.categorization.conftest import category_of, chat_producer, make_tags


def test_registry_and_categorisation_admin_pages_load(admin_client):
    LLMEndpoint.objects.get_or_create(name="local", defaults={"model": "local-model"})
    for url in [
        "/admin/tagsite/llmendpoint/",
        "/admin/tagsite/llmendpoint/add/",
        "/admin/tagsite/llmrole/",
        "/admin/categorization/extendedcategory/",
        "/admin/categorization/categoryproposal/",
        "/admin/categorization/cachedanswer/",
        "/admin/categorization/tagcategory/?category__id__exact=1",
    ]:
        assert admin_client.get(url).status_code == 200, url


def test_admin_action_accepts_proposals(admin_client):
    (tag,) = make_tags("sword")
    proposal = CategoryProposal.objects.create(
        tag=tag, category=ExtendedCategory.objects.get(code="13_Object"), confidence=0.7, producer=chat_producer()
    )
    admin_client.post(
        "/admin/categorization/categoryproposal/", {"action": "accept", "_selected_action": [proposal.pk]}
    )
    assert category_of(tag) == "13_Object"


def propose(tag, code: str = "13_Object") -> CategoryProposal:
    category = ExtendedCategory.objects.get(code=code)
    return CategoryProposal.objects.create(tag=tag, category=category, confidence=0.7, producer=chat_producer())


def test_admin_actions_need_the_categorize_permission(client):
    (tag,) = make_tags("sword")
    proposal = propose(tag)
    user = User.objects.create_user("staff", password="pw-long-enough", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_categoryproposal", "change_categoryproposal"])
    )
    client.force_login(user)
    assert client.get("/admin/categorization/categoryproposal/").status_code == 200
    for action in ("accept", "reject"):
        client.post("/admin/categorization/categoryproposal/", {"action": action, "_selected_action": [proposal.pk]})
    proposal.refresh_from_db()
    assert proposal.status == "pending" and proposal.decided_by is None and category_of(tag) is None


def test_admin_change_form_cannot_decide_a_proposal(admin_client):
    (tag,) = make_tags("sword")
    proposal = propose(tag)
    form = {"tag": tag.pk, "category": proposal.category_id, "confidence": 0.7, "producer": proposal.producer_id}
    form |= {"status": "approved", "decided_by": 1, "decided_at_0": "2024-01-01", "decided_at_1": "00:00"}
    response = admin_client.post(f"/admin/categorization/categoryproposal/{proposal.pk}/change/", form)
    assert response.status_code == 302
    proposal.refresh_from_db()
    assert proposal.status == "pending" and proposal.decided_by is None and proposal.decided_at is None
