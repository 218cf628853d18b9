"""The /tag_categorize page: filters, by-hand and bulk categorisation, proposal review, LLM runs, permissions."""

import pytest
from django.contrib.auth.models import Group, User
from django.db import connection

from categorization import services
from categorization.models import CategoryProposal, ExtendedCategory
from categorization.services import set_category
from tagsite.models import Job, Tag
from tests.categorization.conftest import category_of, chat_producer, make_tags, point_local_endpoint_at
from tests.conftest import wait_for


def propose(tag: Tag, code: str, confidence: float = 0.8) -> CategoryProposal:
    category = ExtendedCategory.objects.get(code=code)
    return CategoryProposal.objects.create(tag=tag, category=category, confidence=confidence, producer=chat_producer())


def test_page_lists_tags_with_proposals_filters_and_chart(admin_client):
    eyes, hat, sky = make_tags("blue_eyes", "hat", "sky")
    propose(eyes, "03_Body_Face")
    set_category([hat.pk], ExtendedCategory.objects.get(code="08_Attire_Acc"), None)
    page = admin_client.get("/tag_categorize").content.decode()
    assert ">blue_eyes<" in page and "03_Body_Face <span" in page and 'id="category-chart"' in page
    chart = admin_client.get("/tag_categorize").context["chart"]
    assert [row[0] for row in chart] == sorted(ExtendedCategory.objects.values_list("code", flat=True)) + [""]
    assert ("08_Attire_Acc", "Attire Acc", 1, 50.0) in chart and chart[-1] == ("", "uncategorised", 2, 100.0)
    only_proposals = admin_client.get("/tag_categorize", {"state": "proposal"}).content.decode()
    assert ">blue_eyes<" in only_proposals and ">hat<" not in only_proposals
    uncategorised = admin_client.get("/tag_categorize", {"state": "uncategorised", "q": "sk"}).context["page"]
    assert [tag["name"] for tag in uncategorised] == ["sky"]
    by_category = admin_client.get("/tag_categorize", {"category": "08_Attire_Acc"}).context["page"]
    assert [tag["name"] for tag in by_category] == ["hat"]


def test_rows_show_each_proposals_evidence_and_escape_names(admin_client):
    """The rows (written by the view, not the template) show the evidence beside each proposal, the row's own
    select and buttons, and escape what a tag's name or a producer's label holds."""
    agrees, disputed, knn, overruled, plain = make_tags("agrees", "disputed", "knn", "overruled", "plain")
    Tag.objects.filter(pk=plain.pk).update(display_name='<b>"x"</b>')
    face, hair = (ExtendedCategory.objects.get(code=code) for code in ("03_Body_Face", "02_Body_Hair"))
    evidence = {agrees: {"knn_category": face}, disputed: {"second_category": hair}, knn: {"knn_category": hair}}
    evidence[overruled] = {"llm_category": hair}
    for tag, votes in evidence.items():
        CategoryProposal.objects.create(tag=tag, category=face, confidence=0.5, producer=chat_producer(), **votes)
    page = admin_client.get("/tag_categorize").content.decode()
    assert ">kNN agrees</span>" in page and ">disputed: 02_Body_Hair</span>" in page
    assert ">kNN: 02_Body_Hair</span>" in page and ">kNN over LLM: 02_Body_Hair</span>" in page
    assert page.count('data-confidence="0.5000"') == 4 and page.count("data-review-card") == 4
    assert f'name="category_{plain.pk}"' in page and f'value="accept:{agrees.pk}"' in page
    assert "<span>&lt;b&gt;&quot;x&quot;&lt;/b&gt;</span>" in page
    assert ">No tags match.<" in admin_client.get("/tag_categorize", {"q": "nothing_like_it"}).content.decode()


def test_set_by_hand_settles_the_pending_proposal(admin_client, admin_user):
    (eyes,) = make_tags("blue_eyes")
    proposal = propose(eyes, "02_Body_Hair")
    response = admin_client.post(
        "/tag_categorize/action",
        {"action": f"set:{eyes.pk}", f"category_{eyes.pk}": "03_Body_Face", "query_string": "q=blue"},
    )
    assert response.status_code == 302 and response["Location"] == "/tag_categorize?q=blue"
    proposal.refresh_from_db()
    assert category_of(eyes) == "03_Body_Face"
    assert proposal.status == "rejected" and proposal.decided_by == admin_user


def test_bulk_set_accept_and_reject(admin_client):
    a, b, c, d = make_tags("a_tag", "b_tag", "c_tag", "d_tag")
    for tag in (a, b, c):
        propose(tag, "13_Object")
    admin_client.post("/tag_categorize/action", {"action": "bulk_accept", "tags": [a.pk, b.pk]})
    admin_client.post("/tag_categorize/action", {"action": "bulk_reject", "tags": [c.pk]})
    admin_client.post("/tag_categorize/action", {"action": "bulk_set", "tags": [d.pk], "bulk_category": "14_Setting"})
    codes = dict(Tag.objects.values_list("name", "category_link__category__code"))
    assert codes == {"a_tag": "13_Object", "b_tag": "13_Object", "c_tag": None, "d_tag": "14_Setting"}
    assert dict(CategoryProposal.objects.values_list("tag__name", "status")) == {
        "a_tag": "approved", "b_tag": "approved", "c_tag": "rejected"
    }  # fmt: skip


def test_moderators_may_categorise_and_other_staff_may_not(client):
    (tag,) = make_tags("hat")
    staff = User.objects.create_user("staff", password="pw-123456", is_staff=True)
    client.force_login(staff)
    assert client.get("/tag_categorize").status_code == 403
    from tagsite.services.accounts import ensure_moderators_group

    ensure_moderators_group()
    staff.groups.add(Group.objects.get(name="moderators"))
    assert client.get("/tag_categorize").status_code == 200
    client.post("/tag_categorize/action", {"action": f"set:{tag.pk}", f"category_{tag.pk}": "08_Attire_Acc"})
    assert category_of(tag) == "08_Attire_Acc"
    client.logout()
    assert client.get("/tag_categorize").status_code == 302  # to the login page


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_llm_run_from_the_page_on_a_real_worker(celery_worker, admin_client, llm):
    point_local_endpoint_at(llm)
    make_tags("1girl", "blue_eyes", "smile", "running", "sword")
    response = admin_client.post("/tag_categorize/run", {"limit": "4"})
    job_id = int(response["Location"].split("job=")[1])
    job = wait_for(lambda: Job.objects.filter(pk=job_id, status__in=["succeeded", "failed"]).first())
    assert job.status == "succeeded", job.message
    assert job.current == job.total == 4 and "success rate 100.0%" in job.message
    assert CategoryProposal.objects.filter(job=job, status="pending").count() == 4
    page = admin_client.get(f"/tag_categorize?job={job_id}").content.decode()
    assert f"Job #{job_id}" in page and "succeeded" in page


@pytest.mark.parametrize("job", ["abc", "1.5", "-1", "²", ""])
def test_a_job_parameter_that_is_not_an_id_is_ignored(admin_client, job):
    latest = Job.objects.create(kind="categorize")
    response = admin_client.get("/tag_categorize", {"job": job})
    assert response.status_code == 200 and response.context["job"] == latest
    assert admin_client.get("/tag_categorize", {"job": "9" * 30}).context["job"] is None  # an id, of no job


def test_odd_tag_ids_and_limits_are_ignored(admin_client, monkeypatch):
    (hat,) = make_tags("hat")
    response = admin_client.post("/tag_categorize/action", {"action": "bulk_reject", "tags": ["²", "x"]})
    assert response.status_code == 302
    monkeypatch.setattr("categorization.views.start_run", lambda limit, user: Job.objects.create(kind=str(limit)))
    assert admin_client.post("/tag_categorize/run", {"limit": "²"}).status_code == 302
    assert Job.objects.get().kind == "100"


def test_a_tag_with_several_pending_proposals_is_listed_once(admin_client):
    """Rows from before the one-pending constraint (dropped here, inside the test's transaction) may still exist."""
    (hat,) = make_tags("hat")
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX one_pending_proposal_per_tag")
    propose(hat, "08_Attire_Acc")
    propose(hat, "13_Object")
    assert [tag["name"] for tag in services.filter_tags(state="proposal")] == ["hat"]
    page = admin_client.get("/tag_categorize", {"state": "proposal"}).context["page"]
    assert [tag["name"] for tag in page] == ["hat"]
