"""/tag_categorize and its API at scale (issue 9): keyset pages through tags that share a usage count, the
same number of queries for 5 rows as for 50, the chart's total estimated on a big table."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from categorization import services
from categorization.models import CategoryProposal, ExtendedCategory
from tagsite.models import Tag
from tagsite.services.lists import tag_keyset_page
from tests.categorization.conftest import chat_producer


def tags_with_ties(count: int) -> list[str]:
    """`count` tags used 0, 1 or 2 times (most share their count with many others), in the list's order."""
    Tag.objects.bulk_create(
        [Tag(name=f"tag_{n:03d}", display_name=f"tag {n}", usage_count=n % 3) for n in range(count)]
    )
    return list(Tag.objects.order_by("-usage_count", "name").values_list("name", flat=True))


@pytest.mark.django_db
def test_keyset_pages_walk_a_usage_count_tie_forward_and_back():
    order = tags_with_ties(25)
    pages, page = [], tag_keyset_page(services.filter_tags(), 4)
    assert page.previous_before is None
    while True:
        pages.append([tag["name"] for tag in page])
        if page.next_after is None:
            break
        page = tag_keyset_page(services.filter_tags(), 4, after=page.next_after)
    assert sum(pages, []) == order and len(pages) == 7
    back = [[tag["name"] for tag in page]]
    while page.previous_before is not None:
        page = tag_keyset_page(services.filter_tags(), 4, before=page.previous_before)
        back.insert(0, [tag["name"] for tag in page])
    assert back == pages


@pytest.mark.django_db
def test_a_filtered_deep_page_and_an_unknown_key(admin_client):
    order = tags_with_ties(30)
    hat = ExtendedCategory.objects.get(code="08_Attire_Acc")
    services.set_category(Tag.objects.filter(name__in=order[::2]).values_list("pk", flat=True), hat, None)
    uncategorised = services.filter_tags(state="uncategorised")
    middle = Tag.objects.get(name=order[11])
    assert [tag["name"] for tag in tag_keyset_page(uncategorised, 3, after=middle.pk)] == order[13:19:2]
    assert [tag["name"] for tag in tag_keyset_page(uncategorised, 3, before=middle.pk)] == order[5:11:2]
    assert [tag["name"] for tag in tag_keyset_page(uncategorised, 3, after=10**9)] == order[1:7:2]  # the first page
    first = Tag.objects.get(name=order[1])
    assert [tag["name"] for tag in tag_keyset_page(uncategorised, 3, before=first.pk)] == order[1:7:2]  # the same
    page = admin_client.get("/tag_categorize", {"state": "uncategorised", "after": "x"}).context["page"]
    assert [tag["name"] for tag in page] == order[1::2]


@pytest.mark.django_db
def test_the_page_links_next_and_previous_by_tag(admin_client):
    order = tags_with_ties(230)
    first = admin_client.get("/tag_categorize", {"q": "tag"})
    html = first.content.decode()
    after = first.context["page"].next_after
    assert f'href="?q=tag&amp;state=all&amp;after={after}" rel="next"' in html and 'rel="prev"' not in html
    second = admin_client.get("/tag_categorize", {"q": "tag", "state": "all", "after": after})
    assert [tag["name"] for tag in second.context["page"]] == order[100:200]
    assert "1,000+" not in second.content.decode() and "230 tags" in second.content.decode()
    before = second.context["page"].previous_before
    back = admin_client.get("/tag_categorize", {"q": "tag", "before": before}).context["page"]
    assert [tag["name"] for tag in back] == order[:100] and back.previous_before is None


@pytest.mark.django_db
def test_the_api_pages_by_cursor(admin_client):
    order = tags_with_ties(120)
    names, url = [], "/api/tag-categories/"
    while url:
        data = admin_client.get(url).json()
        names += [row["name"] for row in data["results"]]
        url = data["next"]
        assert data["count"] == 120
    assert names == order
    last = admin_client.get(admin_client.get("/api/tag-categories/").json()["next"]).json()
    assert [row["name"] for row in admin_client.get(last["previous"]).json()["results"]] == order[:50]


def propose_for(tags: list[Tag]) -> None:
    codes = list(ExtendedCategory.objects.order_by("code"))
    producer = chat_producer()
    CategoryProposal.objects.bulk_create(
        [
            CategoryProposal(
                tag=tag,
                category=codes[n % 22],
                knn_category=codes[(n + n % 2) % 22],
                second_category=codes[n % 7] if n % 3 == 0 else None,
                confidence=0.5,
                producer=producer,
            )
            for n, tag in enumerate(tags)
        ]
    )


def queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


URLS = [
    "/tag_categorize",
    "/tag_categorize?state=proposal",
    "/tag_categorize?state=uncategorised&q=tag",
    "/api/tag-categories/",
    "/api/tag-categories/?state=proposal",
    "/api/category-proposals/",
    "/api/category-proposals/?status=pending",
]


@pytest.mark.django_db
def test_queries_do_not_grow_with_the_rows_shown(admin_client):
    def counts(size: int) -> dict[str, int]:
        Tag.objects.all().delete()
        tags_with_ties(size)
        tags = list(Tag.objects.all())
        propose_for(tags[::2])
        services.set_category([tag.pk for tag in tags[1::3]], ExtendedCategory.objects.get(code="13_Object"), None)
        return {url: queries(admin_client, url) for url in URLS}

    assert counts(5) == counts(50)


@pytest.mark.django_db
def test_the_chart_estimates_the_total_of_a_big_table(admin_client, monkeypatch):
    tags_with_ties(12)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE tagsite_tag")
    assert services.tag_total() == (12, False)
    monkeypatch.setattr(services, "ESTIMATED_FROM", 10)
    assert services.tag_total() == (12, True)
    assert admin_client.get("/tag_categorize").context["chart"][-1] == ("", "uncategorised (estimated)", 12, 100.0)


@pytest.mark.django_db
def test_the_api_rows_are_what_the_serializers_write(admin_client, admin_user):
    """Both lists build their rows without DRF's per-field calls: the same JSON as their serializers."""
    from django.utils import timezone

    from categorization.api import PROPOSAL_NAMES, CategoryProposalSerializer, TagCategorySerializer

    tags_with_ties(12)
    tags = list(Tag.objects.order_by("id"))
    propose_for(tags[::2])
    services.set_category([tag.pk for tag in tags[1::3]], ExtendedCategory.objects.get(code="13_Object"), None)
    decided = CategoryProposal.objects.filter(tag=tags[2]).get()
    CategoryProposal.objects.filter(pk=decided.pk).update(
        status="rejected", decided_by=admin_user, decided_at=timezone.now(), via="api"
    )
    shown = []
    for url in ("/api/tag-categories/", "/api/tag-categories/?state=proposal"):
        listed = admin_client.get(url).json()["results"]
        shown += listed
        ids = [row["id"] for row in listed]
        rows = services.with_pending(list(services.filter_tags(state=url.partition("state=")[2] or "all")))
        expected = [dict(row) for row in TagCategorySerializer(rows, many=True).data]
        assert len(listed) >= 3 and ids == [row["id"] for row in expected] and listed == expected
    assert any(row["pending_proposal"] for row in shown) and any(row["category"] for row in shown)
    listed = admin_client.get("/api/category-proposals/").json()["results"]
    proposals = CategoryProposal.objects.annotate(**PROPOSAL_NAMES).order_by("-id")
    expected = [dict(row) for row in CategoryProposalSerializer(proposals, many=True).data]
    assert len(listed) == 6 and listed == expected
    assert {row["reviewer"] for row in listed} == {None, "admin"}  # a decided one among them
