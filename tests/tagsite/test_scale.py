"""Pages and lists at scale (issue 9): the same number of queries for 5 rows as for 50, capped counts,
light list payloads, cacheable thumbnails, the category select rendered once."""

import importlib
import re
from pathlib import Path

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tagsite.models import Image, Job, Tag
from tagsite.services.lists import capped_count, keyset_page, keyset_slice

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "danbooru_tags_sample.csv"

ADMIN_LISTS = [
    "/admin/tagsite/image/",
    "/admin/tagsite/image/?q={tag}",
    "/admin/tagsite/tag/",
    "/admin/tagsite/tag/?q={prefix}",
    "/admin/tagsite/imagetag/",
    "/admin/tagsite/imagetag/?q={tag}",
    "/admin/tagsite/tagalias/",
    "/admin/tagsite/job/",
    "/admin/suggestions/tagsuggestion/",
    "/admin/suggestions/tagsuggestion/?q={prefix}",
    "/admin/suggestions/tagmapping/",
    "/admin/categorization/categoryproposal/",
    "/admin/categorization/categoryproposal/?q={prefix}",
]
PAGES = [
    "/", "/?q={tag}", "/?q=~{tag}", "/api/images/", "/api/images/?tags={tag}", "/api/images/?any={tag}",
    "/jobs/", "/api/jobs/", "/tag_categorize", "/tag_categorize?q={prefix}",
    "/suggestions/", "/suggestions/?tag={tag}", "/api/suggestions/", "/api/suggestions/?tag={prefix}", "/review/",
    "/api/review/tagsuggestion/?status=pending", "/api/review/tagsuggestion/?status=pending&tag={tag}",
    "/api/review/categoryproposal/?status=pending", "/api/tags/", "/api/tags/autocomplete/?q=a",
    "/api/tag-categories/", "/api/category-proposals/?status=pending", "/api/categories/",
]  # fmt: skip


def ensure_categories() -> None:
    """The 22 categories the migration creates (a transactional test's flush removes them)."""
    from django.apps import apps

    importlib.import_module("categorization.migrations.0002_categories").create_categories(apps, None)


def seed(images: int) -> None:
    ensure_categories()
    call_command(
        "seed_demo", "--images", str(images), "--suggestions", str(images), "--tags", str(SAMPLE), "--reset",
        verbosity=0,
    )  # fmt: skip


def query_counts(client, urls: list[str]) -> dict[str, int]:
    """Queries per page, with a tag that is on some of the seeded images."""
    tag = Tag.objects.filter(usage_count__gt=0).order_by("-usage_count").values_list("name", flat=True).first()
    counts = {}
    for url in urls:
        caches["counts"].clear()  # each search counts its matches, as its first page does
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url.format(tag=tag, prefix=tag[:3]))
        assert response.status_code == 200, (url, response.status_code)
        counts[url] = len(queries)
    return counts


@pytest.mark.django_db(transaction=True)
def test_queries_per_page_do_not_grow_with_the_rows_shown(admin_client):
    seed(5)
    assert Image.objects.count() == Job.objects.count() == 5
    few = query_counts(admin_client, ADMIN_LISTS + PAGES)
    seed(50)
    assert Image.objects.count() == Job.objects.count() == 50
    many = query_counts(admin_client, ADMIN_LISTS + PAGES)
    assert few == many


@pytest.mark.django_db
def test_capped_count_stops_at_the_cap():
    Job.objects.bulk_create([Job(kind="import_images") for _ in range(12)])
    assert capped_count(Job.objects.all(), cap=10) == (10, True)
    assert capped_count(Job.objects.all(), cap=12) == (12, False)


@pytest.mark.django_db
def test_keyset_pages_walk_forward_and_back_without_offset():
    jobs = Job.objects.bulk_create([Job(kind="import_images") for _ in range(7)])
    ids = sorted((job.pk for job in jobs), reverse=True)
    first = keyset_page(Job.objects.all(), 3)
    assert [job.pk for job in first] == ids[:3] and first.previous_before is None
    second = keyset_page(Job.objects.all(), 3, after=first.next_after)
    assert [job.pk for job in second] == ids[3:6]
    last = keyset_page(Job.objects.all(), 3, after=second.next_after)
    assert [job.pk for job in last] == ids[6:] and last.next_after is None
    back = keyset_page(Job.objects.all(), 3, before=last.previous_before)
    assert [job.pk for job in back] == ids[3:6]
    assert [job.pk for job in keyset_page(Job.objects.all(), 3, before=back.previous_before)] == ids[:3]


def test_a_listed_keyset_page_walks_like_a_queried_one():
    values = [2, 3, 5, 7, 11, 13, 17]
    first = keyset_slice(values, 3)
    assert first.items == [2, 3, 5] and (first.next_after, first.previous_before) == (5, None)
    second = keyset_slice(values, 3, after=first.next_after)
    assert second.items == [7, 11, 13] and second.previous_before == 7
    last = keyset_slice(values, 3, after=second.next_after)
    assert last.items == [17] and last.next_after is None
    back = keyset_slice(values, 3, before=last.previous_before)
    assert back.items == [7, 11, 13] and back.previous_before == 7
    assert keyset_slice(values, 3, before=back.previous_before).items == [2, 3, 5]
    assert keyset_slice(values, 3, before=back.previous_before).previous_before is None
    assert keyset_slice(values, 3, after=4).items == [5, 7, 11]  # a key that is gone: the next values


@pytest.mark.django_db
def test_the_job_list_leaves_each_jobs_errors_to_its_own_url(admin_client):
    errors = [{"item": f"/photos/{n}.jpg", "error": "The file is truncated."} for n in range(200)]
    job = Job.objects.create(kind="import_images", errors=errors, error_count=200)
    listed = admin_client.get("/api/jobs/").json()["results"][0]
    assert "errors" not in listed and listed["error_count"] == 200
    assert admin_client.get(f"/api/jobs/{job.pk}/").json()["errors"] == errors


@pytest.mark.django_db
def test_thumbnails_with_their_version_are_cached_for_a_year(admin_client, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    (tmp_path / "thumbs").mkdir()
    (tmp_path / "thumbs" / "t.jpg").write_bytes(b"\xff\xd8 a thumbnail")
    image = Image.objects.create(path="/photos/a.jpg", sha256="ab" * 32, thumbnail="thumbs/t.jpg")
    assert image.thumbnail_url.endswith(f"?v={'ab' * 8}")
    versioned = admin_client.get(image.thumbnail_url)
    assert versioned.status_code == 200 and "immutable" in versioned["Cache-Control"]
    assert "max-age=31536000" in versioned["Cache-Control"]
    plain = admin_client.get(f"/images/{image.pk}/thumbnail.jpg")
    assert "immutable" not in plain["Cache-Control"] and plain["ETag"] == f'"{"ab" * 32}"'
    again = admin_client.get(f"/images/{image.pk}/thumbnail.jpg", headers={"If-None-Match": plain["ETag"]})
    assert again.status_code == 304
    assert admin_client.get(f"/api/images/{image.pk}/").json()["thumbnail_url"] == image.thumbnail_url


@pytest.mark.django_db
def test_the_category_select_is_rendered_once_per_page(admin_client):
    ensure_categories()
    Tag.objects.bulk_create([Tag(name=f"tag_{n}", display_name=f"tag {n}", usage_count=n) for n in range(150)])
    html = admin_client.get("/tag_categorize").content.decode()
    rows = len(re.findall(r'<select name="category_\d+"', html))
    assert rows == 100
    # 22 categories: once in the filter, once in the bulk select, once in the template the rows copy.
    assert html.count('<option value="13_Object"') == 3


@pytest.mark.django_db
def test_the_library_pages_by_id_links(admin_client):
    images = Image.objects.bulk_create([Image(path=f"/photos/{n:03d}.jpg", sha256=f"{n:064x}") for n in range(60)])
    newest_first = sorted((image.pk for image in images), reverse=True)
    first = admin_client.get("/")
    assert "60 images" in first.content.decode()
    assert [image.pk for image in first.context["page"]] == newest_first[:48]
    older = re.search(r'rel="next" href="([^"]+)"', first.content.decode()).group(1).replace("&amp;", "&")
    second = admin_client.get(f"/{older}")
    assert [image.pk for image in second.context["page"]] == newest_first[48:]
    newer = re.search(r'rel="prev" href="([^"]+)"', second.content.decode()).group(1).replace("&amp;", "&")
    assert [image.pk for image in admin_client.get(f"/{newer}").context["page"]] == newest_first[:48]
    assert admin_client.get("/?after=junk").status_code == 200  # a malformed link is the first page


@pytest.mark.django_db
def test_a_tiles_tags_are_the_first_8_added_quoted_in_links_and_escaped(admin_client):
    from tagsite.models import ImageTag

    image = Image.objects.create(path="/photos/a.jpg", sha256="ab" * 32)
    odd = Tag.objects.create(name='a&b "c"', display_name='<b>"x" & y</b>')
    tags = [odd, *Tag.objects.bulk_create([Tag(name=f"tag_{n}", display_name=f"tag {n}") for n in range(9)])]
    ImageTag.objects.bulk_create([ImageTag(image=image, tag=tag) for tag in tags])
    html = admin_client.get("/").content.decode()
    shown = re.findall(r'<a class="tag" href="\?q=([^"]*)">([^<]*)</a>', html)
    assert len(shown) == 8 and shown[1:] == [(f"tag_{n}", f"tag {n}") for n in range(7)]
    assert shown[0] == ("a%26b%20%22c%22", "&lt;b&gt;&quot;x&quot; &amp; y&lt;/b&gt;")


@pytest.mark.django_db
def test_the_images_api_pages_by_cursor_with_a_count(admin_client):
    Image.objects.bulk_create([Image(path=f"/photos/{n:03d}.jpg", sha256=f"{n:064x}") for n in range(60)])
    first = admin_client.get("/api/images/").json()
    assert first["count"] == 60 and first["count_capped"] is False and len(first["results"]) == 50
    assert "cursor=" in first["next"] and first["previous"] is None
    second = admin_client.get(first["next"]).json()
    assert len(second["results"]) == 10 and second["next"] is None
    assert {i["id"] for i in first["results"]}.isdisjoint({i["id"] for i in second["results"]})


@pytest.mark.django_db
def test_api_lists_count_up_to_a_cap(admin_client, monkeypatch):
    from tagsite import pagination

    Tag.objects.bulk_create([Tag(name=f"tag_{n}", display_name=f"tag {n}") for n in range(5)])
    listed = admin_client.get("/api/tags/").json()
    assert (listed["count"], listed["count_capped"], len(listed["results"])) == (5, False, 5)
    monkeypatch.setattr(pagination, "capped_count", lambda rows: capped_count(rows, 3))
    listed = admin_client.get("/api/tags/").json()
    assert (listed["count"], listed["count_capped"]) == (3, True)


@pytest.mark.django_db
def test_tag_categorize_counts_up_to_a_cap(admin_client, monkeypatch):
    from categorization import views

    Tag.objects.bulk_create([Tag(name=f"tag_{n}", display_name=f"tag {n}") for n in range(5)])
    assert "5 tags" in admin_client.get("/tag_categorize").content.decode()
    monkeypatch.setattr(views, "capped_count", lambda tags: capped_count(tags, 3))
    assert "3+ tags" in admin_client.get("/tag_categorize").content.decode()
