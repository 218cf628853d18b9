"""The suggestions review page at scale: keyset next/previous links by image id and a count that stops at 1,000,
so a page costs the same queries however many images wait for review."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from suggestions.models import MLModelVersion, TagSuggestion
from tagsite.models import Image, Tag
from tagsite.services.tags import get_or_create_tags


def pending_images(count: int, start: int = 0) -> list[Image]:
    """`count` images with two pending suggestions each, written in bulk (no tagger needed for a page's cost)."""
    model = MLModelVersion.objects.get_or_create(
        name="wd-test", version="v1",
        defaults={"model_file": "/m/model.onnx", "labels_file": "/m/labels.csv", "sha256": "0" * 64,
                  "input_size": 448, "label_count": 2},
    )[0]  # fmt: skip
    producer = model.producer  # every installed version is a producer
    tags = get_or_create_tags(["smile", "hat"])
    images = Image.objects.bulk_create(
        [Image(path=f"/library/{n}.jpg", sha256=f"{n:064d}") for n in range(start, start + count)]
    )
    TagSuggestion.objects.bulk_create(
        [
            TagSuggestion(image=image, tag=tag, model_version=model, producer=producer, external_tag=name, confidence=c)
            for image in images
            for name, tag, c in (("smile", tags["smile"], 0.9), ("hat", tags["hat"], 0.4))
        ]
    )
    return images


def cards(page: str) -> list[int]:
    return [int(pk) for pk in re.findall(r'class="review-card"[^>]*data-image="(\d+)"', page)]


def link(page: str, rel: str) -> str | None:
    found = re.search(rf'<a rel="{rel}" href="([^"]+)"', page)
    return "/suggestions/" + found.group(1).replace("&amp;", "&") if found else None  # links are `?query`


@pytest.mark.django_db
def test_pages_are_keyset_links_through_every_image_once(admin_client):
    ids = sorted(image.pk for image in pending_images(30))
    approved = pending_images(3, start=100)  # decided already: not in the pending queue
    TagSuggestion.objects.filter(image__in=approved).update(status="approved")
    seen, url = [], "/suggestions/"
    while url:
        page = admin_client.get(url).content.decode()
        assert "page 1 of" not in page and "30 images" in page
        seen += cards(page)
        url = next_url = link(page, "next")
        if next_url:
            back = link(admin_client.get(next_url).content.decode(), "prev")
            assert cards(admin_client.get(back).content.decode()) == cards(page)  # previous comes back here
    assert seen == ids  # oldest first, each image once
    filtered = admin_client.get("/suggestions/", {"status": "approved"}).content.decode()
    assert "3 images" in filtered and link(filtered, "next") is None
    assert admin_client.get("/suggestions/", {"after": "x" * 30}).status_code == 200  # a bad key: the first page


@pytest.mark.django_db
def test_the_count_stops_at_1000(admin_client):
    """Past 1,000 images the page is read in image order from the database, under it from the listed ids: both
    walk the same way, in the same number of queries."""
    ids = sorted(image.pk for image in pending_images(1001))
    with CaptureQueriesContext(connection) as many:
        page = admin_client.get("/suggestions/").content.decode()
    assert "1,000+ images" in page and cards(page) == ids[:12]
    assert cards(admin_client.get(link(page, "next")).content.decode()) == ids[12:24]
    TagSuggestion.objects.filter(image_id__in=ids[:13]).update(status="approved")
    with CaptureQueriesContext(connection) as few:
        page = admin_client.get("/suggestions/", {"status": "approved"}).content.decode()  # 13 images: listed
    assert "13 images" in page and cards(page) == ids[:12] and len(few) == len(many)
    assert cards(admin_client.get(link(page, "next")).content.decode()) == ids[12:13]


@pytest.mark.django_db
def test_a_page_runs_the_same_queries_for_5_and_50_images(admin_client):
    def queries(url: str) -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(url).status_code == 200
        return len(captured)

    pending_images(5)
    small = queries("/suggestions/")
    pending_images(45, start=5)
    assert queries("/suggestions/") == small
    last = Image.objects.order_by("pk").values_list("pk", flat=True)[20]
    assert queries(f"/suggestions/?after={last}") == small  # a later page costs the same


@pytest.mark.django_db
def test_the_tag_filter_matches_a_tag_or_label_prefix_with_ids_resolved_first(admin_client):
    """The filter resolves tag names to ids before the big query (issue 9) and still matches exactly what a name
    or label prefix matched: a tag's name, a model label mapped to another tag, nothing else."""
    smiling = pending_images(3)  # smile 0.9, hat 0.4 each
    model = MLModelVersion.objects.get()
    other = Image.objects.create(path="/library/other.jpg", sha256="f" * 64)
    TagSuggestion.objects.create(
        image=other, tag=get_or_create_tags(["bow"])["bow"], model_version=model, producer=model.producer,
        external_tag="smiling_bow", confidence=0.7,
    )  # fmt: skip
    ids = sorted(image.pk for image in smiling)
    with CaptureQueriesContext(connection) as captured:
        page = admin_client.get("/suggestions/", {"tag": "smi"}).content.decode()
    assert cards(page) == [*ids, other.pk] and "4 images" in page  # the label's image counts too
    big = [
        query["sql"]
        for query in captured.captured_queries
        if 'DISTINCT "suggestions_tagsuggestion"."image_id"' in query["sql"]
    ]
    # the page, the count of the named tags' images and (under 1,000 of them) of everything matched: no join to tags
    assert len(big) == 3 and not any("tagsite_tag" in sql for sql in big)
    few = len(captured)  # read now: the next request resets the log
    assert cards(admin_client.get("/suggestions/", {"tag": "bo"}).content.decode()) == [other.pk]  # by tag name
    assert cards(admin_client.get("/suggestions/", {"tag": "smiling"}).content.decode()) == [other.pk]  # by label
    assert cards(admin_client.get("/suggestions/", {"tag": "zzz"}).content.decode()) == []
    api = admin_client.get("/api/suggestions/", {"tag": "ha"}).json()["results"]
    assert sorted(row["image"] for row in api) == ids and {row["tag"] for row in api} == {"hat"}
    pending_images(40, start=10)
    with CaptureQueriesContext(connection) as more:
        admin_client.get("/suggestions/", {"tag": "smi"})
    assert len(more) == few


@pytest.mark.django_db
def test_a_tag_with_1000_images_is_counted_without_reading_the_labels(admin_client):
    """1,000 images of the named tags are 1,000+ whatever the label prefix adds: the labels' rows (every pending
    row of a common tag) are not read for the count."""
    pending_images(1001)
    with CaptureQueriesContext(connection) as captured:
        page = admin_client.get("/suggestions/", {"tag": "smi"}).content.decode()
    assert "1,000+ images" in page and len(cards(page)) == 12
    counts = [query["sql"] for query in captured.captured_queries if "COUNT(*)" in query["sql"]]
    assert len(counts) == 1 and "external_tag" not in counts[0]


@pytest.mark.django_db
def test_the_queue_api_pages_by_cursor_in_queue_order_without_offset(admin_client):
    """`/api/suggestions/` keeps the queue's order (oldest image first, by category and confidence) across keyset
    pages: every pending suggestion once, a later page in as many queries as the first and no OFFSET."""
    pending_images(40)  # 80 suggestions: two pages of 50
    expected = list(
        TagSuggestion.objects.filter(status="pending")
        .order_by("image_id", "category", "-confidence", "id")
        .values_list("pk", flat=True)
    )
    seen, url, costs = [], "/api/suggestions/", []
    while url:
        with CaptureQueriesContext(connection) as captured:
            data = admin_client.get(url).json()
        costs.append(len(captured))
        assert not any(" OFFSET " in query["sql"] for query in captured.captured_queries)
        assert data["count"] == 80 and not data["count_capped"]
        seen += [row["id"] for row in data["results"]]
        url = data["next"]
    assert seen == expected and len(costs) == 2 and costs[0] == costs[1]


@pytest.mark.django_db
def test_a_row_escapes_tag_and_label_text_and_offers_decisions_to_moderators_only(admin_client, client):
    """The rows are filled in Python (`SUGGESTION_ROW`): every text is escaped as the template would, and a staff
    user without the review permission sees the rows without the approve and reject buttons."""
    from django.contrib.auth.models import User

    (image,) = pending_images(1)
    TagSuggestion.objects.filter(image=image, external_tag="smile").update(external_tag='<b>"smile"</b>')
    Tag.objects.filter(name="smile").update(display_name="smile <i>&</i> 'grin'")
    page = admin_client.get("/suggestions/").content.decode()
    assert "smile &lt;i&gt;&amp;&lt;/i&gt; &#x27;grin&#x27;" in page and "<i>" not in page
    assert 'title="&lt;b&gt;&quot;smile&quot;&lt;/b&gt; · wd-test v1"' in page
    assert page.count('data-decision="approved" aria-label="approve ') == 2

    client.force_login(User.objects.create_user("looker", is_staff=True))
    page = client.get("/suggestions/").content.decode()
    assert page.count('data-proposal data-id="') == 2 and 'data-decision="approved"' not in page
