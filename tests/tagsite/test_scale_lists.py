"""Lists the benchmark does not drive (issue 9's audit): every row reachable by keyset pages, no N+1 on an image's
tags, no heavy job parameters in lists, admin searches resolved to ids first."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tagsite.models import Decision, Image, ImageStage, ImageTag, Job, Tag, TagAlias, TagImplication
from tagsite.services.lists import tag_keyset_page


def image_with_tags(count: int, user) -> Image:
    image = Image.objects.create(path=f"/photos/{count}.jpg", sha256=f"{count:064x}")
    tags = Tag.objects.bulk_create([Tag(name=f"t{count}_{n}", display_name=f"t{count} {n}") for n in range(count)])
    ImageTag.objects.bulk_create([ImageTag(image=image, tag=tag, source="manual", added_by=user) for tag in tags])
    return image


def queries(client, url: str) -> int:
    return len(sql_of(client, url))


def sql_of(client, url: str) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return [query["sql"] for query in captured]


@pytest.mark.django_db
def test_an_image_page_and_its_admin_page_run_as_many_queries_for_5_tags_as_for_50(admin_client, admin_user):
    few, many = image_with_tags(5, admin_user), image_with_tags(50, admin_user)
    for url in ("/images/{}/", "/admin/tagsite/image/{}/change/"):
        admin_client.get(url.format(few.pk))  # the first request's one-off lookups (session, content types)
        assert queries(admin_client, url.format(few.pk)) == queries(admin_client, url.format(many.pk)), url
    page = admin_client.get(f"/admin/tagsite/image/{many.pk}/change/").content.decode()
    assert "t50 49" in page  # an existing link still names its tag


def walk(client, url: str) -> list[dict]:
    rows = []
    while url:
        listed = client.get(url).json()
        rows += listed["results"]
        url = listed["next"]
    return rows


@pytest.mark.django_db
def test_every_tag_is_reachable_most_used_first_past_the_count_cap(admin_client):
    Tag.objects.bulk_create([Tag(name=f"tag_{n:04d}", display_name=f"tag {n}", usage_count=n % 3) for n in range(1100)])
    first = admin_client.get("/api/tags/").json()
    assert (first["count"], first["count_capped"]) == (1000, True) and "cursor=" in first["next"]
    rows = walk(admin_client, "/api/tags/")
    assert len(rows) == 1100  # page-number pages stopped at row 1,000 (page 21 was a 404)
    assert [(-r["usage_count"], r["name"]) for r in rows] == sorted((-r["usage_count"], r["name"]) for r in rows)
    last = admin_client.get(first["next"]).json()
    assert admin_client.get(last["previous"]).json()["results"] == first["results"]
    found = walk(admin_client, "/api/tags/?search=tag_10")
    assert sorted(r["name"] for r in found) == [f"tag_{n:04d}" for n in range(1000, 1100)]


@pytest.mark.django_db
def test_tag_keyset_pages_walk_back_as_they_walked_forward():
    Tag.objects.bulk_create([Tag(name=f"tag_{n:02d}", display_name=f"tag {n}", usage_count=n % 4) for n in range(30)])
    tags = Tag.objects.all()
    first = tag_keyset_page(tags, 7)
    second = tag_keyset_page(tags, 7, after=first.next_after)
    assert tag_keyset_page(tags, 7, before=second.previous_before).items == first.items


@pytest.mark.django_db
def test_aliases_implications_and_jobs_page_by_keys_past_the_count_cap(admin_client):
    tag, other = Tag.objects.bulk_create([Tag(name="cat", display_name="cat"), Tag(name="dog", display_name="dog")])
    TagAlias.objects.bulk_create([TagAlias(antecedent=f"alias_{n:04d}", tag=tag) for n in range(1010)])
    Job.objects.bulk_create([Job(kind="import_images") for _ in range(1010)])
    aliases = walk(admin_client, "/api/aliases/")
    assert [a["antecedent"] for a in aliases] == [f"alias_{n:04d}" for n in range(1010)]
    jobs = walk(admin_client, "/api/jobs/")
    assert [j["id"] for j in jobs] == sorted(Job.objects.values_list("pk", flat=True), reverse=True)
    TagImplication.objects.create(antecedent=tag, consequent=other)
    assert [i["antecedent"] for i in walk(admin_client, "/api/implications/")] == ["cat"]


@pytest.mark.django_db
def test_the_job_list_leaves_each_jobs_parameters_to_its_own_url(admin_client):
    job = Job.objects.create(kind="write_metadata", params={"images": list(range(1, 5001)), "mode": "sidecar"})
    listed = admin_client.get("/api/jobs/").json()["results"][0]
    assert "params" not in listed
    assert len(admin_client.get(f"/api/jobs/{job.pk}/").json()["params"]["images"]) == 5000
    page = admin_client.get(f"/jobs/{job.pk}/").content.decode()
    assert "1, 2, 3" in page and "(5,000 in all)" in page and "4999" not in page and "sidecar" in page


@pytest.mark.django_db
def test_the_job_list_rows_are_what_the_list_serializer_writes(admin_client, admin_user):
    """The list builds its rows without DRF's per-field calls: the same JSON as JobListSerializer."""
    from django.utils import timezone

    from tagsite.api import JobListSerializer

    now = timezone.now()
    Job.objects.create(kind="import_images", status=Job.Status.QUEUED)
    Job.objects.create(
        kind="write_metadata", status=Job.Status.CANCELLED, current=3, total=7, counts={"written": 3}, error_count=1,
        message="stopped", advice="retry", created_by=admin_user, started_at=now, finished_at=now,
        cancel_requested_at=now, cancelled_by=admin_user,
    )  # fmt: skip
    listed = admin_client.get("/api/jobs/").json()["results"]
    expected = JobListSerializer(Job.objects.order_by("-id"), many=True).data
    assert len(listed) == 2 and listed == [dict(row) for row in expected]
    assert listed[0]["created_by"] == listed[0]["cancelled_by"] == "admin" and listed[0]["percent"] == 42.9


@pytest.mark.django_db
def test_the_jobs_page_links_older_and_newer_pages_by_id(admin_client):
    Job.objects.bulk_create([Job(kind="import_images") for _ in range(120)])
    ids = sorted(Job.objects.values_list("pk", flat=True), reverse=True)
    first = admin_client.get("/jobs/")
    assert first.context["jobs"][0]["id"] == ids[0] and len(first.context["jobs"]) == 50
    assert f"?after={ids[49]}" in first.content.decode() and 'id="jobs"' in first.content.decode()
    last = admin_client.get(f"/jobs/?after={ids[99]}")
    assert [job["id"] for job in last.context["jobs"]] == ids[100:]
    assert f"?before={ids[100]}" in last.content.decode() and 'id="jobs"' not in last.content.decode()
    assert 'rel="next"' not in last.content.decode()


@pytest.mark.django_db
def test_admin_searches_resolve_users_and_images_first(admin_client, admin_user):
    image = Image.objects.create(path="/photos/holiday/beach.jpg", sha256="a" * 64)
    other = Image.objects.create(path="/photos/work.jpg", sha256="b" * 64)
    ImageStage.objects.create(image=image, stage="ingest", status="ok")
    ImageStage.objects.create(image=other, stage="thumbnail", status="failed", error="Truncated JPEG")
    ImageStage.objects.create(image=other, stage="emotion", status="ok")
    listed = admin_client.get("/admin/tagsite/imagestage/?q=holiday").context["cl"].result_list
    assert [stage.image_id for stage in listed] == [image.pk]
    listed = admin_client.get("/admin/tagsite/imagestage/?q=truncated").context["cl"].result_list
    assert [stage.stage for stage in listed] == ["thumbnail"]
    page = admin_client.get("/admin/tagsite/imagestage/")
    assert [choice["display"] for choice in page.context["cl"].filter_specs[0].choices(page.context["cl"])] == [
        "All", "emotion", "ingest", "thumbnail",
    ]  # fmt: skip
    assert len(admin_client.get("/admin/tagsite/imagestage/?stage=emotion").context["cl"].result_list) == 1
    # no DISTINCT over the table for the filter, no text match across a join per row for a search
    assert not [sql for sql in sql_of(admin_client, "/admin/tagsite/imagestage/") if "DISTINCT" in sql]
    stage_lists = [sql for sql in sql_of(admin_client, "/admin/tagsite/imagestage/?q=holiday") if "LIKE" in sql]
    assert stage_lists and not [sql for sql in stage_lists if "JOIN" in sql]
    Decision.objects.create(kind="tagsuggestion", object_id=42, status="approved", applied=True, user=admin_user)
    Decision.objects.create(kind="tagsuggestion", object_id=43, status="approved", applied=True, user=None)
    found = admin_client.get(f"/admin/tagsite/decision/?q={admin_user.username[:3]}").context["cl"].result_list
    assert [decision.object_id for decision in found] == [42]
    searched = [sql for sql in sql_of(admin_client, "/admin/tagsite/decision/?q=adm") if "LIKE" in sql.upper()]
    assert searched and not [sql for sql in searched if "tagsite_decision" in sql]
    assert [d.object_id for d in admin_client.get("/admin/tagsite/decision/?q=43").context["cl"].result_list] == [43]


@pytest.mark.django_db
def test_a_search_counts_once_a_minute_whatever_page_it_is_on(admin_client, admin_user):
    """Library and /api/images/ keep a search's count for a minute (`lists.search_count`): the next page and the
    same search again run no count; another search, or the minute over, counts again."""
    import time
    from unittest import mock

    tag = Tag.objects.create(name="cat_ears", display_name="cat ears")

    def tagged(n: int) -> None:
        image = Image.objects.create(path=f"/photos/{n}.jpg", sha256=f"{n:064x}")
        ImageTag.objects.create(image=image, tag=tag, source="manual", added_by=admin_user)

    for n in range(3):
        tagged(n)
    name = tag.name

    def counts(url: str) -> int:
        return sum("COUNT(" in sql for sql in sql_of(admin_client, url))

    for url in (f"/?q={name}", f"/api/images/?tags={name}"):
        assert counts(url) == 1
        assert counts(url) == 0
        assert counts(f"{url}&after=999999") == counts(f"{url}&cursor=cD05OTk5OTk%3D") == 0  # another page
        assert counts(f"{url}&status=failed") == 1  # another search
    assert admin_client.get(f"/api/images/?tags={name}").json()["count"] == 3
    tagged(3)
    with mock.patch("time.time", return_value=time.time() + 61):
        assert counts(f"/?q={name}") == 1
        assert admin_client.get(f"/api/images/?tags={name}").json()["count"] == 4
