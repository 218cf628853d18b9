"""Suggestions' long lists at scale: keyset pages that skip nothing, queries that do not grow with the rows shown,
no whole-table reads, no per-label JSON in lists."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from suggestions import services
from suggestions.models import HeldPrediction, MLModelVersion, TagSuggestion, TextProposal, UnmappedTag
from tagsite.models import Image, Producer, Tag

pytestmark = pytest.mark.django_db


def images(count: int, start: int = 0) -> list[Image]:
    return Image.objects.bulk_create(
        [Image(path=f"/photos/{n:04d}.jpg", sha256=f"{n:064x}") for n in range(start, start + count)]
    )


def model_version(name: str = "wd", kind: str = MLModelVersion.Kind.WD14) -> MLModelVersion:
    return MLModelVersion.objects.create(
        name=name, version="v1", kind=kind, model_file=f"/m/{name}.onnx", labels_file=f"/m/{name}.csv",
        sha256="0" * 64, input_size=448, label_count=3, tag_thresholds={f"label_{n}": 0.5 for n in range(3000)},
    )  # fmt: skip


def suggestions(model, pictures, per_image: int, **fields) -> list[TagSuggestion]:
    names = [f"tag_{model.pk}_{n:03d}" for n in range(per_image)]
    Tag.objects.bulk_create([Tag(name=name, display_name=name) for name in names], ignore_conflicts=True)
    tags = list(Tag.objects.filter(name__in=names).order_by("name"))
    return TagSuggestion.objects.bulk_create(
        [
            TagSuggestion(
                image=image,
                tag=tag,
                model_version=model,
                producer=model.producer,
                external_tag=tag.name,
                category=n % 2,
                confidence=0.5 + (n % 5) / 10,
                **fields,
            )
            for image in pictures
            for n, tag in enumerate(tags)
        ]  # fmt: skip
    )


def queries(client, url: str) -> list[str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return [query["sql"] for query in captured]


def walk(client, url: str, decide=None) -> list[dict]:
    """Every row of a cursor-paged API, following `next` links; `decide(rows)` runs between pages."""
    rows = []
    while url:
        page = client.get(url).json()
        rows += page["results"]
        if decide:
            decide(page["results"])
        url = page["next"]
    return rows


def test_deciding_between_queue_pages_skips_nothing(admin_client, admin_user):
    """Page 1 ends inside an image; approving its rows must not shift page 2 past rows no one has seen."""
    model = model_version()
    suggestions(model, images(3), per_image=30)
    pending = list(
        TagSuggestion.objects.order_by("image_id", "category", "-confidence", "id").values_list("pk", flat=True)
    )

    def approve(rows):
        services.decide(TagSuggestion.objects.filter(pk__in=[row["id"] for row in rows]), "approved", admin_user)

    seen = [row["id"] for row in walk(admin_client, "/api/suggestions/", decide=approve)]
    assert seen == pending


def test_queue_pages_walk_back_and_forth_in_order(admin_client):
    model = model_version()
    suggestions(model, images(3), per_image=30)
    order = list(
        TagSuggestion.objects.order_by("image_id", "category", "-confidence", "id").values_list("pk", flat=True)
    )
    first = admin_client.get("/api/suggestions/").json()
    second = admin_client.get(first["next"]).json()
    assert [row["id"] for row in first["results"] + second["results"]] == order and second["next"] is None
    back = admin_client.get(second["previous"]).json()
    assert [row["id"] for row in back["results"]] == order[:50] and back["previous"] is None
    assert admin_client.get("/api/suggestions/?cursor=bm9wZQ").status_code == 404  # malformed: not a 500


def test_queue_rows_are_what_the_serializer_writes(admin_client, admin_user):
    """The list builds its rows from plain values: the same JSON as TagSuggestionSerializer, decided rows too."""
    from django.utils import timezone

    from suggestions.api import TagSuggestionSerializer

    rows = suggestions(model_version(), images(2), per_image=4)
    TagSuggestion.objects.filter(pk__in=[rows[0].pk, rows[5].pk]).update(
        status=TagSuggestion.Status.APPROVED, decided_by=admin_user, decided_at=timezone.now(), via="api"
    )
    TagSuggestion.objects.filter(pk=rows[6].pk).update(category=Tag.DanbooruCategory.CHARACTER, external_tag="x y")
    listed = admin_client.get("/api/suggestions/", {"status": ""}).json()["results"]
    objects = TagSuggestion.objects.select_related("tag", "model_version").in_bulk([row["id"] for row in listed])
    expected = TagSuggestionSerializer([objects[row["id"]] for row in listed], many=True).data
    assert len(listed) == 8 and listed == [dict(row) for row in expected]
    assert sum(row["reviewed_by"] == admin_user.pk and row["reviewed_at"] is not None for row in listed) == 2


def test_a_tag_filters_count_stops_at_the_named_tags_past_the_cap(admin_client, monkeypatch):
    """Past the cap the named tags' own rows answer the count: the tag-or-label count is not run."""
    from suggestions import api
    from tagsite.services.lists import capped_count

    suggestions(model_version(), images(3), per_image=2)  # tags tag_<pk>_000 and _001 on 3 images each
    prefix = Tag.objects.order_by("name").values_list("name", flat=True).first()[:-1]
    data = admin_client.get("/api/suggestions/", {"tag": prefix}).json()
    assert (data["count"], data["count_capped"], len(data["results"])) == (6, False, 6)
    counted = []
    monkeypatch.setattr(api, "capped_count", lambda rows: counted.append(rows) or capped_count(rows, 3))
    data = admin_client.get("/api/suggestions/", {"tag": prefix}).json()
    assert (data["count"], data["count_capped"], len(data["results"]), len(counted)) == (3, True, 6, 1)
    assert "LIKE" not in str(counted[0].query)


def test_queue_rows_leave_the_model_versions_thresholds_out(admin_client):
    suggestions(model_version(), images(2), per_image=3)
    assert not any("tag_thresholds" in sql for sql in queries(admin_client, "/api/suggestions/"))


def test_model_versions_list_without_per_label_thresholds(admin_client):
    model = model_version()
    listed = admin_client.get("/api/model-versions/").json()["results"]
    assert [row["id"] for row in listed] == [model.pk] and "tag_thresholds" not in listed[0]
    assert len(admin_client.get(f"/api/model-versions/{model.pk}/").json()["tag_thresholds"]) == 3000
    assert not any("tag_thresholds" in sql for sql in queries(admin_client, "/api/model-versions/"))
    assert not any("tag_thresholds" in sql for sql in queries(admin_client, "/suggestions/"))
    admin = queries(admin_client, "/admin/suggestions/tagsuggestion/")
    assert not any("tag_thresholds" in sql for sql in admin)


def worklist(count: int, start: int = 0) -> list[UnmappedTag]:
    """Entries waited on by 0, 1 or 2 images (by their number mod 3)."""
    model = MLModelVersion.objects.first() or model_version()
    entries = UnmappedTag.objects.bulk_create(
        [UnmappedTag(source="danbooru", external_tag=f"label_{n:03d}") for n in range(start, start + count)]
    )
    pictures = images(2, start)
    HeldPrediction.objects.bulk_create(
        [
            HeldPrediction(unmapped=entry, image=image, model_version=model, confidence=0.5)
            for n, entry in enumerate(entries, start)
            for image in pictures[: n % 3]
        ]
    )
    return entries


def test_the_worklist_pages_by_key_most_waited_on_first(admin_client):
    entries = worklist(130)
    order = [entry.pk for entry in sorted(entries, key=lambda entry: (-(entries.index(entry) % 3), entry.external_tag))]
    rows = walk(admin_client, "/api/unmapped-tags/")
    assert [row["id"] for row in rows] == order and rows[0]["waiting"] == 2
    first = admin_client.get("/suggestions/unmapped/").content.decode()
    assert "130 labels" in first and 'rel="next"' in first and 'rel="prev"' not in first
    page = services.worklist_page(services.worklist(), 100)
    second = services.worklist_page(services.worklist(), 100, after=page.next_after)
    assert [entry.pk for entry in [*page, *second]] == order and second.next_after is None
    back = services.worklist_page(services.worklist(), 100, before=second.previous_before)
    assert [entry.pk for entry in back] == order[:100] and back.previous_before is None
    after = admin_client.get(f"/suggestions/unmapped/?after={page.next_after}").content.decode()
    assert 'rel="prev"' in after and 'rel="next"' not in after


@pytest.mark.parametrize("url", ["/suggestions/unmapped/", "/api/unmapped-tags/", "/admin/suggestions/unmappedtag/"])
def test_worklist_queries_do_not_grow_with_the_rows_shown(admin_client, url):
    worklist(5)
    few = len(queries(admin_client, url))
    worklist(45, 100)
    assert len(queries(admin_client, url)) == few


def test_the_admin_worklist_counts_each_rows_images_not_every_prediction(admin_client):
    worklist(6)
    page = admin_client.get("/admin/suggestions/unmappedtag/?o=4").content.decode()  # by images waiting
    assert page.count('<td class="field-waiting">2</td>') == 2


def test_the_report_counts_pending_in_sql_and_reads_no_images(admin_client, wd14):
    pictures = images(6)
    pending = suggestions(wd14, pictures, per_image=2)
    TagSuggestion.objects.filter(pk=pending[0].pk).update(status=TagSuggestion.Status.REJECTED)
    sql = queries(admin_client, "/suggestions/report/")
    assert not any('"tagsite_image"' in query for query in sql)  # no join to every suggestion's image
    rows = {row.label: row for row in services.review_report()}
    assert (rows[pending[0].external_tag].pending, rows[pending[0].external_tag].rejected) == (5, 1)
    assert rows[pending[1].external_tag].tag_name == pending[1].tag.name


def vlm_queue(count: int, start: int):
    """Images with pending texts (even ids) or VLM keywords (odd), and a WD14 suggestion the page leaves out."""
    vlm = MLModelVersion.objects.filter(kind=MLModelVersion.Kind.VLM).first() or model_version(
        "vlm", MLModelVersion.Kind.VLM
    )
    pictures = images(count, start)
    TextProposal.objects.bulk_create(
        [
            TextProposal(image=image, field="title", text=f"title {image.pk}", model_text="t", producer=vlm.producer)
            for image in pictures[::2]
        ]
    )
    suggestions(vlm, pictures[1::2], per_image=1)
    return pictures


def test_the_texts_page_pages_images_of_either_kind(admin_client):
    wd = model_version()
    pictures = vlm_queue(15, 0)
    suggestions(wd, images(1, 100), per_image=1)  # a tagger's suggestion is no VLM keyword
    first = admin_client.get("/suggestions/texts/")
    shown = [card["image"].pk for card in first.context["cards"]]
    assert shown == [image.pk for image in pictures[:12]]
    second = admin_client.get(f"/suggestions/texts/?after={first.context['page'].next_after}")
    assert [card["image"].pk for card in second.context["cards"]] == [image.pk for image in pictures[12:]]
    assert second.context["page"].next_after is None
    back = admin_client.get(f"/suggestions/texts/?before={second.context['page'].previous_before}")
    assert [card["image"].pk for card in back.context["cards"]] == shown


def test_the_texts_page_reads_a_page_of_ids_not_every_pending_row(admin_client):
    vlm_queue(5, 0)
    few = queries(admin_client, "/suggestions/texts/")
    vlm_queue(45, 100)
    many = queries(admin_client, "/suggestions/texts/")
    assert len(many) == len(few)
    assert not any('"kind"' in sql and "tagsite_image" in sql for sql in many)  # versions resolved to ids first
    assert not any("suggestions_textproposal" in sql and "LIMIT" not in sql and "IN (" not in sql for sql in many)


def test_accepting_edited_texts_updates_them_in_one_query(admin_client):
    producer = Producer.objects.create(kind=Producer.Kind.CHAT, name="vlm", prompt_version="default-v1")
    proposals = TextProposal.objects.bulk_create(
        [
            TextProposal(image=image, field=field, text="model", model_text="model", producer=producer)
            for image in images(2)
            for field in TextProposal.Field.values
        ]
    )
    items = [{"id": proposal.pk, "text": f"edited {proposal.pk}"} for proposal in proposals]
    with CaptureQueriesContext(connection) as captured:
        answer = admin_client.post("/api/text-proposals/accept/", {"items": items}, content_type="application/json")
    assert answer.status_code == 200 and len(answer.json()["changed"]) == 6
    edits = [q["sql"] for q in captured if q["sql"].startswith('UPDATE "suggestions_textproposal" SET "text"')]
    assert len(edits) == 1
    assert sorted(TextProposal.objects.values_list("text", flat=True)) == sorted(item["text"] for item in items)
