"""Pages: the review queue, the unmapped-label worklist, the learning-from-review report and the VLM texts' review."""

from collections import defaultdict

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q
from django.shortcuts import redirect, render

from suggestions import services
from suggestions.filters import (
    QueueFilterSerializer,
    ReportFilterSerializer,
    WorklistDecisionSerializer,
    WorklistFilterSerializer,
    error_lines,
    page_query,
)
from suggestions.models import MLModelVersion, TagSuggestion, TextProposal, UnmappedTag
from tagsite.access import require
from tagsite.links import object_url
from tagsite.models import Image, Tag
from tagsite.services.lists import count_label, keyset_page, page_key

CATEGORY_ORDER = [Tag.DanbooruCategory.CHARACTER, Tag.DanbooruCategory.COPYRIGHT, Tag.DanbooruCategory.ARTIST]
REVIEW = "suggestions.review_tagsuggestion"


def review_queue(request):
    """Images with suggestions, tags grouped by category; decisions go through the API without reloads. Pages are
    keyset links by image id and the count stops at 1,000, so a million pending suggestions cost what a page does.
    Both read the image ids off the suggestions' indexes: images reviewed already (the oldest, in a queue worked
    oldest first) are never walked."""
    filters = page_query(request, QueueFilterSerializer)
    after, before = page_key(request.GET.get("after")), page_key(request.GET.get("before"))
    queue = services.review_queue_page(12, after, before, **filters)
    page = queue.images
    images = Image.objects.only("path", "sha256", "thumbnail", "rating").in_bulk(page.items)
    by_image: dict[int, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    rows = queue.suggestions.filter(image__in=page.items).order_by("-confidence", "pk")
    for pk, image_id, category, status, confidence, label, tag, name, display, model, version in rows.values_list(
        "pk", "image_id", "category", "status", "confidence", "external_tag", "tag_id", "tag__name",
        "tag__display_name", "model_version__name", "model_version__version",
    ):  # fmt: skip
        # plain values, formatted once here: a page shows about 170 of them and the template only places them
        by_image[image_id][category].append(
            {"pk": pk, "status": status, "confidence": f"{confidence:.4f}", "bar": f"{confidence:.3f}",
             "conf": f"{confidence:.2f}", "title": f"{label} · {model} {version}", "tag": tag, "name": name,
             "display": display}
        )  # fmt: skip
    order = lambda category: (CATEGORY_ORDER.index(category) if category in CATEGORY_ORDER else 9, category)  # noqa: E731
    cards = [
        {
            "image": images[image_id],
            "detail": object_url("image-detail", image_id),
            "file": object_url("image-file", image_id),
            "groups": [
                (Tag.DanbooruCategory(category).label, items)
                for category, items in sorted(by_image[image_id].items(), key=lambda item: order(item[0]))
            ],
        }
        for image_id in page
        if image_id in images
    ]
    query = request.GET.copy()
    for key in ("after", "before", "page"):
        query.pop(key, None)
    return render(
        request,
        "suggestions/review.html",
        {
            "cards": cards,
            "page": page,
            "count": count_label(queue.count, queue.capped),
            "count_number": queue.count,
            "filters": filters,
            "query": query.urlencode(),
            "statuses": TagSuggestion.Status.choices,
            "model_names": MLModelVersion.objects.order_by("name").values_list("name", flat=True).distinct(),
            "threshold": settings.SUGGESTIONS_DEFAULT_THRESHOLDS["general"] + 0.15,
            "can_review": request.user.has_perm(REVIEW),
            "show_similar": request.user.is_staff,
            "active_models": MLModelVersion.objects.filter(active=True),
        },
    )


def unmapped(request):
    """The worklist: map labels to a tag, to tags of their own names, or ignore them, in bulk."""
    if request.method == "POST":
        require(request.user, REVIEW)
        decision = WorklistDecisionSerializer(data=request.POST)
        if not decision.is_valid():
            for line in error_lines(decision.errors):
                messages.error(request, line)
            return redirect(request.get_full_path())
        entries = UnmappedTag.objects.filter(pk__in=decision.validated_data["ids"])
        action = decision.validated_data["action"]
        try:
            count = services.resolve_worklist(entries, action, decision.validated_data["tag"], request.user)
        except (ValueError, KeyError) as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"{count} label{'s' if count != 1 else ''}: {action.replace('_', ' ')}")
        return redirect(request.get_full_path())
    source = page_query(request, WorklistFilterSerializer)["source"]
    page = Paginator(services.worklist(source or None), 100).get_page(request.GET.get("page"))
    sources = UnmappedTag.objects.order_by("source").values_list("source", flat=True).distinct()
    return render(
        request,
        "suggestions/unmapped.html",
        {"page": page, "source": source, "sources": sources, "can_review": request.user.has_perm(REVIEW)},
    )


def report(request):
    """Learning from review: precision per model and label, and thresholds that reach a target precision."""
    if request.method == "POST":
        require(request.user, REVIEW)
        try:
            chosen = _chosen_thresholds(request.POST.getlist("apply"))
        except ValueError as exc:
            messages.error(request, f"Nothing applied: {exc}")
            return redirect(request.get_full_path())
        for model in MLModelVersion.objects.filter(pk__in=chosen):
            labels = chosen[model.pk]
            thresholds = {label: value for label, value in labels.items() if value is not None}
            services.apply_thresholds(model, thresholds, [label for label in labels if label not in thresholds])
        changed = [value for labels in chosen.values() for value in labels.values()]
        messages.success(
            request,
            f"Applied {sum(v is not None for v in changed)} label thresholds, turned {changed.count(None)} labels off.",
        )
        return redirect(request.get_full_path())
    query = page_query(request, ReportFilterSerializer)
    target = settings.SUGGESTIONS_TARGET_PRECISION if query["target"] is None else query["target"]
    model = query["model"]
    versions = MLModelVersion.objects.filter(name=model) if model else None
    return render(
        request,
        "suggestions/report.html",
        {
            "rows": services.review_report(versions, target),
            "target": target,
            "confidence_level": services.CONFIDENCE_LEVEL,
            "model": model,
            "model_names": MLModelVersion.objects.order_by("name").values_list("name", flat=True).distinct(),
            "can_review": request.user.has_perm(REVIEW),
        },
    )


def _chosen_thresholds(values: list[str]) -> dict[int, dict[str, float | None]]:
    """Model id -> label -> threshold (None: turn off) from the report's `id:threshold:label` or `id:off:label`
    checkboxes; ValueError if malformed."""
    chosen: dict[int, dict[str, float | None]] = defaultdict(dict)
    for value in values:
        model_id, _, rest = value.partition(":")
        threshold, _, label = rest.partition(":")
        off = threshold == "off"
        if not (model_id.isdigit() and label and "\x00" not in label and (off or 0 <= float(threshold) <= 1)):
            raise ValueError(f"{value!r} is not model:threshold:label")  # a nan fails the range check too
        chosen[int(model_id)][label] = None if off else float(threshold)
    return chosen


TEXT_REVIEW = "suggestions.review_textproposal"


def text_review(request):
    """The VLM stages' review screen: per image (large), each field's pending proposal editable in place, keyword
    chips, "Apply metadata"; keyset pages of images with pending texts or VLM keywords (`?producer=` narrows)."""
    texts = TextProposal.objects.filter(status=TextProposal.Status.PENDING)
    keywords = TagSuggestion.objects.filter(
        status=TagSuggestion.Status.PENDING, model_version__kind=MLModelVersion.Kind.VLM
    )
    if (producer := request.GET.get("producer", "")).isdigit():
        texts, keywords = texts.filter(producer_id=producer), keywords.filter(producer_id=producer)
    images = Image.objects.filter(Q(pk__in=texts.values("image_id")) | Q(pk__in=keywords.values("image_id")))
    after, before = page_key(request.GET.get("after")), page_key(request.GET.get("before"))
    page = keyset_page(images, 12, after=after, before=before, oldest_first=True)
    ids = [image.pk for image in page]
    by_image: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for proposal in texts.filter(image_id__in=ids).select_related("producer").order_by("pk"):
        by_image[proposal.image_id][proposal.field].append(proposal)
    chips: dict[int, list[dict]] = defaultdict(list)
    rows = keywords.filter(image_id__in=ids).order_by("-confidence", "pk")
    for pk, image_id, label, tag, display, confidence in rows.values_list(
        "pk", "image_id", "external_tag", "tag_id", "tag__display_name", "confidence"
    ):
        chips[image_id].append({"pk": pk, "label": label, "tag": tag, "display": display, "confidence": confidence})
    cards = [
        {
            "image": image,
            "fields": [(name, getattr(image, name), by_image[image.pk][name]) for name in TextProposal.Field.values],
            "keywords": chips[image.pk],
        }
        for image in page
    ]
    query = request.GET.copy()
    for key in ("after", "before"):
        query.pop(key, None)
    return render(
        request,
        "suggestions/texts.html",
        {
            "cards": cards,
            "page": page,
            "query": query.urlencode(),
            "can_review": request.user.has_perm(TEXT_REVIEW) and request.user.has_perm(REVIEW),
            "can_write": request.user.has_perm("tagsite.write_metadata"),
        },
    )
