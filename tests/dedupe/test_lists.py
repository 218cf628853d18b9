"""The merge lists (/dedupe/, /api/merge-proposals/, /api/review/mergeproposal/) run the same queries for 5 and 50
proposals, never load `undo`, and show each member's newest thumbnails."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from dedupe import services
from dedupe.models import MergeMember, MergeProposal, MustNotMerge
from tagsite.models import Image, ImageTag, Producer
from tests.dedupe.conftest import make_tags

pytestmark = pytest.mark.django_db
URLS = ["/dedupe/", "/api/merge-proposals/?status=pending", "/api/review/mergeproposal/?status=pending"]


def proposals(count: int, confidence=lambda n: 0.9) -> None:
    producer = Producer.objects.get_or_create(kind=Producer.Kind.EMBEDDING, name="minilm")[0]
    start = MergeProposal.objects.count()
    for n in range(start, start + count):
        tags = make_tags(f"tag_{n}", f"tag{n}", f"tags_{n}")
        proposal = MergeProposal.objects.create(
            producer=producer,
            confidence=confidence(n),
            representative=tags[0],
            representative_name=tags[0].name,
            undo={"members": [{"images": [[1, "ai"]] * 50}]},
        )
        MergeMember.objects.bulk_create(
            MergeMember(proposal=proposal, tag=tag, name=tag.name, similarity=1 - i / 10, reason="lexical")
            for i, tag in enumerate(tags)
        )


def queries(client, url: str) -> tuple[int, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured), [query["sql"] for query in captured]


@pytest.mark.parametrize("url", URLS)
def test_the_same_queries_for_5_and_50_proposals_and_no_undo(admin_client, url):
    proposals(5)
    few, _ = queries(admin_client, url)
    proposals(45)
    many, sql = queries(admin_client, url)
    assert few == many
    assert not [query for query in sql if "merge" in query and '"undo"' in query]


def test_thumbnails_are_each_tags_newest_images_with_a_thumbnail():
    cat, dog, bird = make_tags("cat", "dog", "bird")
    images = Image.objects.bulk_create(
        Image(path=f"/library/{n}.jpg", sha256=f"{n:064}", thumbnail="" if n == 4 else f"thumbs/{n}.jpg")
        for n in range(6)
    )
    ImageTag.objects.bulk_create([ImageTag(image=image, tag=cat) for image in images])
    ImageTag.objects.bulk_create([ImageTag(image=image, tag=dog) for image in images[:2]])
    found = services.thumbnails([cat.pk, dog.pk, bird.pk, cat.pk])
    assert {tag: [image.pk for image in shown] for tag, shown in found.items()} == {
        cat.pk: [images[5].pk, images[3].pk, images[2].pk],
        dog.pk: [images[1].pk, images[0].pk],
    }
    assert found[cat.pk][0].thumbnail_url.endswith(f"?v={images[5].sha256[:16]}")
    assert services.thumbnails([]) == {}


def test_must_not_merge_admin_search_finds_the_tags_first(admin_client):
    cat, dog, bird = make_tags("cat", "dog", "bird")
    MustNotMerge.objects.create(tag_a=cat, tag_b=dog)
    MustNotMerge.objects.create(tag_a=bird, tag_b=cat)
    with CaptureQueriesContext(connection) as captured:
        answer = admin_client.get("/admin/dedupe/mustnotmerge/", {"q": "do"})
    assert answer.status_code == 200 and answer.context["cl"].result_count == 1
    assert not [query["sql"] for query in captured if "mustnotmerge" in query["sql"] and "LIKE" in query["sql"]]
    assert admin_client.get("/admin/dedupe/mustnotmerge/", {"q": "cat"}).context["cl"].result_count == 2


def test_the_merge_screen_pages_by_keys_through_confidence_ties(admin_client):
    proposals(45, confidence=lambda n: (n % 4) / 10)  # about 11 share each confidence
    order = list(MergeProposal.objects.order_by("-confidence", "-id").values_list("pk", flat=True))
    pages, url = [], "/dedupe/?status=pending"
    while url:
        answer = admin_client.get(url)
        page = answer.context["page"]
        pages.append([proposal.pk for proposal in page])
        html = answer.content.decode()
        url = f"/dedupe/?status=pending&after={page.next_after}" if page.next_after else None
        assert (f'after={page.next_after}" rel="next"' in html) == bool(url)
    assert sum(pages, []) == order and [len(page) for page in pages] == [20, 20, 5]
    back = admin_client.get("/dedupe/", {"status": "pending", "before": order[40]}).context["page"]
    assert [proposal.pk for proposal in back] == order[20:40] and back.previous_before == order[20]
    first = admin_client.get("/dedupe/", {"status": "pending", "before": order[20]}).context["page"]
    assert [proposal.pk for proposal in first] == order[:20] and first.previous_before is None
    assert admin_client.get("/dedupe/", {"status": "pending", "after": "x"}).context["page"].items[0].pk == order[0]
