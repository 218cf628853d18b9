"""Suggestions entering review (pending, or approved by a rule) and the decisions on them, through the review core."""

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Q, QuerySet

from suggestions.models import (
    MLModelVersion,
    TagSuggestion,
)
from tagsite.models import Image, ImageTag, Tag
from tagsite.review import services as review
from tagsite.services.lists import KeysetPage, capped_count, keyset_page, keyset_slice
from tagsite.services.tags import implication_edges


@dataclass
class Candidate:
    label: str
    category: int
    confidence: float


def create_suggestions(
    model: MLModelVersion, per_image: dict[Image, dict[Tag, Candidate]], *, job_id: int | None = None
) -> int:
    """Pending suggestions for the tags and what they imply, minus tags an image has or a human rejected; `job_id`
    is the job that produced them (none when a new mapping releases held predictions)."""
    implies = implication_edges({tag.pk for tags in per_image.values() for tag in tags})
    image_ids = [image.pk for image in per_image]
    rejected = TagSuggestion.objects.filter(
        image_id__in=image_ids, model_version__name=model.name, status=TagSuggestion.Status.REJECTED
    ).values_list("image_id", "tag_id")
    excluded = set(ImageTag.objects.filter(image_id__in=image_ids).values_list("image_id", "tag_id").union(rejected))
    suggestions = []
    for image, tags in per_image.items():
        confidence = {tag.pk: candidate for tag, candidate in tags.items()}
        frontier = list(confidence)
        while frontier:  # implied tags inherit the best confidence of what implies them
            antecedent = frontier.pop()
            for consequent in implies.get(antecedent, ()):
                best = confidence.get(consequent)
                if best is None or best.confidence < confidence[antecedent].confidence:
                    confidence[consequent] = confidence[antecedent]
                    frontier.append(consequent)
        suggestions += [
            TagSuggestion(
                image=image,
                tag_id=tag_id,
                model_version=model,
                producer_id=model.producer_id,
                job_id=job_id,
                external_tag=c.label,
                category=c.category,
                confidence=c.confidence,
            )
            for tag_id, c in confidence.items()
            if (image.pk, tag_id) not in excluded
        ]
    stored = len(TagSuggestion.objects.bulk_create(suggestions, ignore_conflicts=True))
    new = TagSuggestion.objects.filter(image_id__in=image_ids, model_version=model)
    review.auto_approve("tagsuggestion", new, named_only=model.kind == MLModelVersion.Kind.VLM)  # rank, not odds
    return stored


def decide(suggestions: Iterable[TagSuggestion], status: str, user, via: str = "page") -> int:
    """Approve or reject suggestions through the review core (tagsite.review): approval tags the image with
    provenance, rejection is remembered, a change of mind takes back what the approval added. Of a queryset
    only the ids are read, without the model's ordering (it joins every row's image) unless it is sliced."""
    if isinstance(suggestions, QuerySet):
        unordered = suggestions if suggestions.query.is_sliced else suggestions.order_by()
        ids = list(unordered.values_list("pk", flat=True))
    else:
        ids = [s.pk for s in suggestions]
    return len(review.decide(kind="tagsuggestion", ids=ids, status=status, user=user, via=via))


def review_images(images: Iterable[Image], threshold: float, user, via: str = "page") -> dict[str, int]:
    """Approve each image's pending suggestions at or above `threshold` and reject the rest."""
    pending = TagSuggestion.objects.filter(image__in=list(images), status=TagSuggestion.Status.PENDING)
    return {
        "approved": decide(pending.filter(confidence__gte=threshold), TagSuggestion.Status.APPROVED, user, via),
        "rejected": decide(pending.filter(confidence__lt=threshold), TagSuggestion.Status.REJECTED, user, via),
    }


def review_queue(
    status: str = TagSuggestion.Status.PENDING,
    model: str = "",
    tag: str = "",
    min_confidence: float | None = None,
    max_confidence: float | None = None,
) -> tuple[QuerySet[TagSuggestion], QuerySet[TagSuggestion] | None]:
    """The queue's suggestions (the API pages them, oldest image first, and reads its rows with `values()`), filters
    resolved to ids; with a tag filter also those of the named tags alone: a subset, whose count off the pending
    (tag, status) index answers 1,000+ without the tag-or-label count's bitmap of two indexes (3 ms at 1M rows)."""
    return _queue(status, model, tag, min_confidence, max_confidence)


@dataclass
class QueuePage:
    images: KeysetPage  # of image ids
    count: int
    capped: bool
    suggestions: QuerySet[TagSuggestion]


def review_queue_page(
    size: int,
    after: int | None = None,
    before: int | None = None,
    *,
    status: str = TagSuggestion.Status.PENDING,
    model: str = "",
    tag: str = "",
    min_confidence: float | None = None,
    max_confidence: float | None = None,
) -> QueuePage:
    """The review page's image ids (keyset, oldest first), their count up to COUNT_CAP, and the matching suggestions.

    With a tag filter the images of the named tags are counted first, off the pending (tag, image) index: 1,000 of
    them are 1,000+ whatever the labels add, and the labels' rows (every pending 1girl row, 12-34 ms) are read only
    for a rarer prefix. Past the cap a walk in image order meets a page at once; under it the ids are listed once,
    since the planner, expecting a rare tag's rows spread evenly, would walk 800k rows to find them at the end.
    """
    suggestions, named = _queue(status, model, tag, min_confidence, max_confidence)
    image_ids = suggestions.values_list("image_id", flat=True).distinct()
    count, capped = capped_count(named.values("image_id").distinct()) if named is not None else (0, False)
    if not capped:
        count, capped = capped_count(image_ids)
    if capped:
        page = keyset_page(image_ids, size, after=after, before=before, oldest_first=True, key="image_id")
    else:
        page = keyset_slice(sorted(image_ids.order_by()), size, after=after, before=before)
    return QueuePage(page, count, capped, suggestions)


def _queue(
    status: str, model: str, tag: str, min_confidence: float | None, max_confidence: float | None
) -> tuple[QuerySet[TagSuggestion], QuerySet[TagSuggestion] | None]:
    """The queue's suggestions and, with a tag filter, those of the named tags alone (a subset: the label prefix
    is or-ed to them). Names are resolved to ids first, so one model's or tag's rows come from its pending
    (model or tag, image) index in image order."""
    suggestions = TagSuggestion.objects.all()
    if status:
        suggestions = suggestions.filter(status=status)
    if model:
        versions = MLModelVersion.objects.filter(name=model).values_list("pk", flat=True)
        suggestions = suggestions.filter(model_version_id__in=list(versions))
    if min_confidence is not None:
        suggestions = suggestions.filter(confidence__gte=min_confidence)
    if max_confidence is not None:
        suggestions = suggestions.filter(confidence__lte=max_confidence)
    if not tag:
        return suggestions, None
    tag_ids = _tag_ids_by_prefix(tag)
    named = suggestions.filter(tag_id__in=tag_ids)
    return suggestions.filter(Q(tag_id__in=tag_ids) | Q(external_tag__startswith=tag)), named


PREFIX_TAG_IDS = 1000


def _tag_ids_by_prefix(prefix: str) -> list[int] | QuerySet:
    """Ids of the tags named `prefix...`, resolved before the big query so the planner uses the pending (tag, image)
    and label indexes (a name matched across the join walks every pending row: 100-280 ms). A prefix naming more
    than 1,000 tags stays a subquery: its tags are common, and walking images in id order finds them quickly."""
    tags = Tag.objects.filter(name__startswith=prefix).order_by().values_list("pk", flat=True)  # any 1,001 do
    ids = list(tags[: PREFIX_TAG_IDS + 1])
    return ids if len(ids) <= PREFIX_TAG_IDS else tags
