"""The text proposals' review: edit-and-accept through the API, the permission, the hub's link, the screen's pages."""

import pytest
from django.contrib.auth.models import Group

from suggestions.models import TextProposal
from tagsite.models import Decision, Producer
from tagsite.services.accounts import MODERATORS, ensure_moderators_group
from tests.suggestions.conftest import add_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def proposals(tmp_path):
    producer = Producer.objects.create(kind=Producer.Kind.CHAT, name="vlm", prompt_version="default-v1")
    image = add_image(tmp_path, "a.png", (200, 10, 10))
    return [
        TextProposal.objects.create(image=image, field=name, text=f"model {name}", model_text=f"model {name}",
                                    producer=producer)
        for name in ("title", "caption")
    ]  # fmt: skip


def test_edit_and_accept_in_one_call_keeps_the_models_answer(admin_client, proposals):
    title, caption = proposals
    answer = admin_client.post(
        "/api/text-proposals/accept/",
        {"items": [{"id": title.pk, "text": "  Edited   title "}, {"id": caption.pk}], "via": "page"},
        content_type="application/json",
    )
    assert answer.status_code == 200 and sorted(answer.json()["changed"]) == [title.pk, caption.pk]
    title.refresh_from_db()
    image = title.image
    image.refresh_from_db()
    assert (title.text, title.model_text, image.title, image.caption) == (
        "Edited title", "model title", "Edited title", "model caption"
    )  # fmt: skip
    assert Decision.objects.filter(kind="textproposal", via="page").count() == 2
    too_long = admin_client.post(
        "/api/text-proposals/accept/", {"items": [{"id": title.pk, "text": "x" * 300}]}, content_type="application/json"
    )
    assert too_long.status_code == 400


def test_deciding_texts_needs_the_review_permission(client, django_user_model, proposals):
    user = django_user_model.objects.create_user("staff", password="pw-long-enough", is_staff=True)
    client.force_login(user)
    body = {"items": [{"id": proposals[0].pk}]}
    assert client.post("/api/text-proposals/accept/", body, content_type="application/json").status_code == 403
    ensure_moderators_group()
    user.groups.add(Group.objects.get(name=MODERATORS))
    user = django_user_model.objects.get(pk=user.pk)
    client.force_login(user)
    assert client.post("/api/text-proposals/accept/", body, content_type="application/json").status_code == 200


def test_the_hub_links_the_screen_and_the_screen_lists_pending_texts(admin_client, proposals):
    hub = admin_client.get("/review/").content.decode()
    assert "Titles, captions and descriptions" in hub and "/suggestions/texts/" in hub
    page = admin_client.get(f"/suggestions/texts/?producer={proposals[0].producer_id}").content.decode()
    assert "model title" in page and "model caption" in page
    assert "Apply metadata" in page


def test_profiles_and_text_proposals_in_admin(admin_client, proposals):
    for url in ["/admin/suggestions/promptprofile/", "/admin/suggestions/textproposal/",
                "/admin/suggestions/textproposal/?q=model", "/admin/suggestions/promptprofile/add/"]:  # fmt: skip
        assert admin_client.get(url).status_code == 200, url
    answer = admin_client.post(
        "/admin/suggestions/textproposal/",
        {"action": "approve", "_selected_action": [proposals[0].pk]},
    )
    assert answer.status_code == 302
    proposals[0].image.refresh_from_db()
    assert proposals[0].image.title == "model title"
