"""Admin: the registry is editable, proposals can be accepted in bulk."""

from categorization.models import CategoryProposal, ExtendedCategory
from tagsite.models import LLMEndpoint
from tests.categorization.conftest import make_tags


def test_registry_and_categorisation_admin_pages_load(admin_client):
    LLMEndpoint.objects.get_or_create(name="local", defaults={"model": "local-model"})
    for url in [
        "/admin/tagsite/llmendpoint/",
        "/admin/tagsite/llmendpoint/add/",
        "/admin/tagsite/llmrole/",
        "/admin/categorization/extendedcategory/",
        "/admin/categorization/categoryproposal/",
        "/admin/categorization/cachedanswer/",
        "/admin/tagsite/tag/?extended_category__id__exact=1",
    ]:
        assert admin_client.get(url).status_code == 200, url


def test_admin_action_accepts_proposals(admin_client):
    (tag,) = make_tags("sword")
    proposal = CategoryProposal.objects.create(
        tag=tag, category=ExtendedCategory.objects.get(code="13_Object"), confidence=0.7, model="m", prompt_version="v"
    )
    admin_client.post(
        "/admin/categorization/categoryproposal/", {"action": "accept", "_selected_action": [proposal.pk]}
    )
    tag.refresh_from_db()
    assert tag.extended_category.code == "13_Object"
