"""The similar-tags API, the merge proposal API (edits and decisions with permissions), admin and the merge screen."""

import pytest

from dedupe import services
from dedupe.models import MergeProposal, MustNotMerge
from tagsite.models import Image, Job, TagAlias
from tests.dedupe.conftest import embed_all, login, make_tags
from tests.dedupe.test_merge import library, proposal_for

pytestmark = pytest.mark.django_db
JSON = "application/json"


def test_similar_tags(client, space):
    cat, _dog, kitten, _car = make_tags("cat", "dog", "kitten", "car")
    embed_all(space)
    login(client, moderator=False)
    answer = client.get(f"/api/tags/{cat.pk}/similar/", {"k": 2})
    assert answer.status_code == 200
    assert [row["name"] for row in answer.json()] == ["kitten", "dog"]
    assert 0 < answer.json()[1]["similarity"] < answer.json()[0]["similarity"] < 1
    assert client.get(f"/api/tags/{cat.pk}/similar/", {"k": 0}).status_code == 400
    assert client.get("/api/tags/999999/similar/").status_code == 404
    meant = client.get("/api/tags/did-you-mean/", {"q": "automobile", "k": 1}).json()
    assert [row["name"] for row in meant] == ["car"]
    client.logout()
    assert client.get(f"/api/tags/{kitten.pk}/similar/").status_code == 403


def test_merge_proposal_api_edits_and_decides(client, space, django_capture_on_commit_callbacks):
    tags = library()
    proposal = proposal_for(space)
    login(client, "viewer", moderator=False)
    assert client.post(f"/api/merge-proposals/{proposal.pk}/drop/", {"tag": tags["tshirt"].pk}).status_code == 403
    login(client)
    listed = client.get("/api/merge-proposals/", {"status": "pending"}).json()["results"]
    assert [row["representative_name"] for row in listed] == ["t_shirt"]
    assert {m["name"] for m in listed[0]["members"]} == {"t_shirt", "tshirt", "t_shirts"}
    url = f"/api/merge-proposals/{proposal.pk}"
    answer = client.post(f"{url}/representative/", {"tag": tags["sky"].pk}, content_type=JSON)
    assert answer.status_code == 400 and "included member" in answer.json()["tag"][0]
    assert client.post(f"{url}/drop/", {"tag": tags["t_shirts"].pk}, content_type=JSON).status_code == 200
    assert MustNotMerge.objects.count() == 2
    with django_capture_on_commit_callbacks(execute=False):
        answer = client.post(f"{url}/decide/", {"status": "approved", "write": True}, content_type=JSON)
    assert answer.json()["changed"] == [proposal.pk] and answer.json()["write_job"]
    job = Job.objects.get(pk=answer.json()["write_job"])
    assert job.kind == "write_metadata" and job.params["selection"] == {
        "ids": [Image.objects.get(path="/library/1.jpg").pk]
    }
    assert job.params["options"]["mode"] == "append" and job.params["options"]["remove"] == ["tshirt"]
    assert TagAlias.objects.filter(antecedent="tshirt", tag__name="t_shirt").exists()
    bulk = client.post("/api/merge-proposals/decide/", {"ids": [proposal.pk], "status": "pending"}, content_type=JSON)
    assert bulk.json()["changed"] == [proposal.pk] and not TagAlias.objects.exists()  # undone


def test_merge_screen_and_admin(client, space):
    tags = library()
    proposal = proposal_for(space)
    login(client)
    page = client.get("/dedupe/").content.decode()
    assert f'id="merge-{proposal.pk}"' in page and 'value="drop:' in page
    hub = client.get("/review/").content.decode()
    assert "/dedupe/" in hub
    answer = client.post(f"/dedupe/{proposal.pk}/", {"action": f"representative:{tags['tshirt'].pk}"})
    assert answer.status_code == 302
    assert MergeProposal.objects.get(pk=proposal.pk).representative == tags["tshirt"]
    client.post(f"/dedupe/{proposal.pk}/", {"action": "approve"})
    assert set(TagAlias.objects.values_list("antecedent", flat=True)) == {"t_shirt", "t_shirts"}
    admin_page = client.get(f"/admin/dedupe/mergeproposal/{proposal.pk}/change/")
    assert admin_page.status_code == 200 and "t_shirts" in admin_page.content.decode()
    tag_page = client.get(f"/admin/tagsite/tag/{tags['sky'].pk}/change/").content.decode()
    assert "Similar tags" in tag_page and "tshirt" in tag_page


def test_admin_actions_and_inline_drop(admin_client, space, django_capture_on_commit_callbacks):
    tags = library()
    proposal = proposal_for(space)
    form = admin_client.get(f"/admin/dedupe/mergeproposal/{proposal.pk}/change/").context["adminform"].form
    assert "representative" in form.fields
    members = list(proposal.members.order_by("id"))
    data = {
        "representative": proposal.representative_id,
        "members-TOTAL_FORMS": len(members),
        "members-INITIAL_FORMS": len(members),
        "members-MIN_NUM_FORMS": 0,
        "members-MAX_NUM_FORMS": 1000,
    }
    for i, member in enumerate(members):
        data[f"members-{i}-id"] = member.pk
        data[f"members-{i}-proposal"] = proposal.pk
        if member.name != "t_shirts":
            data[f"members-{i}-included"] = "on"
    answer = admin_client.post(f"/admin/dedupe/mergeproposal/{proposal.pk}/change/", data)
    assert answer.status_code == 302, answer.content.decode()[:2000]
    assert MustNotMerge.objects.filter(tag_a=min(tags["t_shirts"].pk, tags["t_shirt"].pk)).exists()
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            "/admin/dedupe/mergeproposal/", {"action": "reject", "_selected_action": [proposal.pk]}, follow=True
        )
    assert MergeProposal.objects.get(pk=proposal.pk).status == "rejected"
    assert services.find_clusters(space) == []
