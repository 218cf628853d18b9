"""Every admin changelist over a large table (a LargeListAdmin) runs as many queries for 50 rows as for 5
(issue 9): rows of every such model are made here, so a new one is covered once it has a builder."""

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils.timezone import localtime

from categorization.models import CachedAnswer, CategoryProposal, ExtendedCategory, TagCategory
from dedupe.models import MergeMember, MergeProposal, MustNotMerge
from emotion.models import EmotionLabel, EmotionProposal, Face, ImageEmotion
from suggestions.models import (
    HeldPrediction,
    ImageRun,
    MLModelVersion,
    TagMapping,
    TagSuggestion,
    TextProposal,
    UnmappedTag,
)
from tagsite.admin import LargeListAdmin
from tagsite.models import (
    Decision,
    Image,
    ImageStage,
    ImageTag,
    Job,
    Producer,
    Tag,
    TagAlias,
    TagImplication,
)


def large_lists() -> list[str]:
    return [
        f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        for model, model_admin in admin.site._registry.items()
        if isinstance(model_admin, LargeListAdmin)
    ]


def add_rows(start: int, stop: int) -> None:
    """Rows `start` to `stop` of every large list: each with its own image, tags, decider and producers."""
    user = get_user_model().objects.get(username="admin")
    tagger = Producer.objects.get_or_create(kind=Producer.Kind.ONNX_TAGGER, name="tagger", version="1")[0]
    chat = Producer.objects.get_or_create(kind=Producer.Kind.CHAT, name="chat", prompt_version="1")[0]
    model = MLModelVersion.objects.get_or_create(
        name="tagger", version="1", defaults={"producer": tagger, "input_size": 448, "label_count": 2}
    )[0]
    label, other = EmotionLabel.objects.order_by("position")[:2]
    category, second = ExtendedCategory.objects.order_by("pk")[:2]
    for i in range(start, stop):
        image = Image.objects.create(path=f"/library/{i}.jpg", sha256=f"{i:064x}", thumbnail=f"thumbs/{i}.jpg")
        tag, target = Tag.objects.bulk_create([Tag(name=f"tag_{i}", display_name=f"tag {i}") for i in (i, -i - 1)])
        job = Job.objects.create(kind="import_images", created_by=user, errors=[{"item": "x", "error": "y"}])
        decided = {"decided_by": user, "via": "admin", "status": "approved"}
        ImageTag.objects.create(image=image, tag=tag, source="manual", added_by=user)
        ImageStage.objects.create(image=image, stage="caption", status="done")
        TagAlias.objects.create(antecedent=f"alias_{i}", tag=tag, created_by=user)
        TagImplication.objects.create(antecedent=tag, consequent=target, created_by=user)
        Decision.objects.create(kind="tagsuggestion", object_id=i, previous="pending", status="approved", applied=True)
        TagMapping.objects.create(external_tag=f"label_{i}", tag=tag, created_by=user)
        TagSuggestion.objects.create(
            producer=tagger, image=image, tag=tag, model_version=model, external_tag=f"label_{i}", confidence=0.5,
            job=job, **decided,
        )  # fmt: skip
        unmapped = UnmappedTag.objects.create(source="danbooru", external_tag=f"unknown_{i}")
        HeldPrediction.objects.create(unmapped=unmapped, image=image, model_version=model, confidence=0.5)
        ImageRun.objects.create(image=image, model_version=model, rating="general")
        TextProposal.objects.create(producer=chat, image=image, field="title", text="t", model_text="t", **decided)
        TagCategory.objects.create(tag=tag, category=category)
        CategoryProposal.objects.create(
            producer=chat, tag=tag, category=category, knn_category=second, llm_category=category,
            second_category=second, **decided,
        )  # fmt: skip
        CachedAnswer.objects.create(
            tag_name=tag.name, model="chat", prompt_version="1", category=category, confidence=1.0
        )
        merge = MergeProposal.objects.create(producer=chat, representative=tag, representative_name=tag.name, **decided)
        MergeMember.objects.create(proposal=merge, tag=target, name=target.name, similarity=0.9, reason="embedding")
        MustNotMerge.objects.create(tag_a=tag, tag_b=target, created_by=user)
        run = ImageEmotion.objects.create(image=image, producer=chat, outcome="labelled")
        face = Face.objects.create(run=run, image=image, index=0, x=1, y=1, width=9, height=9, detection_confidence=1)
        EmotionProposal.objects.create(
            producer=chat, face=face, image=image, label=label, proposed_label=other, **decided
        )


def rows_and_queries(client) -> dict[str, tuple[int, int]]:
    """Per list: the rows shown and the queries run."""
    found = {}
    for url in large_lists():
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200, url
        found[url] = (len(response.context["cl"].result_list), len(queries))
    return found


@pytest.mark.django_db
def test_large_changelists_run_the_same_queries_for_5_and_50_rows(admin_client):
    add_rows(0, 5)
    few = rows_and_queries(admin_client)
    add_rows(5, 50)
    many = rows_and_queries(admin_client)
    assert min(rows for rows, _ in few.values()) >= 5
    assert {url: rows for url, (rows, _) in many.items()} == dict.fromkeys(many, 50)  # a full page each
    assert {url: queries for url, (_, queries) in few.items()} == {url: queries for url, (_, queries) in many.items()}


@pytest.mark.django_db
def test_rows_checkbox_link_and_timestamps(admin_client):
    """The checkbox and change link written once per page are what Django's widget and reverse() give, the link
    keeping the list's search and order; date and time columns are sortable timestamps, a category proposal's
    votes one cell."""
    add_rows(0, 1)
    tag = Tag.objects.get(name="tag_0")
    page = admin_client.get("/admin/tagsite/tag/").content.decode()
    assert (
        f'<input type="checkbox" name="_selected_action" value="{tag.pk}" class="action-select" '
        f'aria-label="Select this object for an action - tag 0">'
    ) in page
    assert f'href="/admin/tagsite/tag/{tag.pk}/change/"' in page
    searched = admin_client.get("/admin/tagsite/tag/?q=tag_0&o=1").content.decode()
    assert f'href="/admin/tagsite/tag/{tag.pk}/change/?_changelist_filters=q%3Dtag_0%26o%3D1"' in searched
    job = Job.objects.get()
    jobs = admin_client.get("/admin/tagsite/job/?o=-7").content.decode()  # by creation, a timestamp column
    assert f'<td class="field-created_at">{localtime(job.created_at):%Y-%m-%d\u00a0%H:%M}</td>' in jobs
    assert '<td class="field-finished_at">-</td>' in jobs
    knn, llm, second = CategoryProposal.objects.values_list(
        "knn_category__code", "llm_category__code", "second_category__code"
    ).get()
    proposals = admin_client.get("/admin/categorization/categoryproposal/").content.decode()
    assert f'<td class="field-evidence">{knn} / {llm} / {second}</td>' in proposals
