"""Pages: the review queue, the unmapped-label worklist, the learning-from-review report and the VLM texts' review."""

from collections import defaultdict
from html import escape

from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect, render
from django.utils.safestring import mark_safe

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
from tagsite.services.lists import capped_count, count_label, keyset_slice, page_key

CATEGORY_ORDER = [Tag.DanbooruCategory.CHARACTER, Tag.DanbooruCategory.COPYRIGHT, Tag.DanbooruCategory.ARTIST]
REVIEW = "suggestions.review_tagsuggestion"


# A suggestion's row on the review page, filled in Python (the texts escaped, the rest are numbers and choices): a
# page shows about 170 of them, and the template engine spent half the page's CPU resolving and escaping each one's
# dozen values; format_html, a third.
SUGGESTION_ROW = (
    '<li class="suggestion {status}" data-proposal data-id="{pk}" data-confidence="{confidence}" title="{title}">'
    '<div class="name"><span class="tag-name">{display}</span><details class="similar" data-tag="{tag}">'
    '<summary class="small muted">similar</summary><span class="similar-list small"></span></details></div>'
    '<span class="bar" style="--c: {bar}"><span></span></span><span class="conf">{conf}</span>{buttons}</li>'
)
DECISION_BUTTONS = (
    '<button type="button" class="approve" data-decision="approved" aria-label="approve {name}">✓</button>'
    '<button type="button" class="reject" data-decision="rejected" aria-label="reject {name}">✗</button>'
)


def review_queue(request):
    """Images with suggestions, tags grouped by category; decisions go through the API without reloads. Pages are
    keyset links by image id and the count stops at 1,000, so a million pending suggestions cost what a page does.
    Both read the image ids off the suggestions' indexes: images reviewed already (the oldest, in a queue worked
    oldest first) are never walked."""
    filters = page_query(request, QueueFilterSerializer)
    can_review = request.user.has_perm(REVIEW)
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
        by_image[image_id][category].append(
            SUGGESTION_ROW.format(
                pk=pk, status=status, confidence=f"{confidence:.4f}", bar=f"{confidence:.3f}",
                conf=f"{confidence:.2f}", title=escape(f"{label} · {model} {version}"), tag=tag,
                display=escape(display), buttons=DECISION_BUTTONS.format(name=escape(name)) if can_review else "",
            )
        )  # fmt: skip
    order = lambda category: (CATEGORY_ORDER.index(category) if category in CATEGORY_ORDER else 9, category)  # noqa: E731
    cards = [
        {
            "image": images[image_id],
            "detail": object_url("image-detail", image_id),
            "file": object_url("image-file", image_id),
            "groups": [
                (Tag.DanbooruCategory(category).label, mark_safe("".join(rows)))  # noqa: S308 - escaped above
                for category, rows in sorted(by_image[image_id].items(), key=lambda item: order(item[0]))
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
            "can_review": can_review,
            "active_models": MLModelVersion.objects.filter(active=True).only("name", "version"),
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
    after, before = request.GET.get("after"), request.GET.get("before")
    entries = services.worklist(source or None)
    page = services.worklist_page(entries, 100, after, before)
    count, capped = capped_count(entries.values("pk"))  # entries, not their images waiting
    query = request.GET.copy()
    for key in ("after", "before", "page"):
        query.pop(key, None)
    return render(
        request,
        "suggestions/unmapped.html",
        {
            "page": page,
            "count": count_label(count, capped),
            "count_number": count,
            "query": query.urlencode(),
            "source": source,
            "sources": services.label_sources(),
            "can_review": request.user.has_perm(REVIEW),
        },
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
    try:
        rows = services.review_report(versions, target)
    except (OSError, services.ModelInstallError) as exc:  # a model's label file moved or broke: say so, no 500
        rows = []
        messages.error(request, f"No report: a model's label file cannot be read ({exc}). Reinstall that model.")
    return render(
        request,
        "suggestions/report.html",
        {
            "rows": rows,
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
    vlm = list(MLModelVersion.objects.filter(kind=MLModelVersion.Kind.VLM).values_list("pk", flat=True))
    texts = TextProposal.objects.filter(status=TextProposal.Status.PENDING)
    keywords = TagSuggestion.objects.filter(status=TagSuggestion.Status.PENDING, model_version__in=vlm)
    if (producer := request.GET.get("producer", "")).isdigit():
        texts, keywords = texts.filter(producer_id=producer), keywords.filter(producer_id=producer)
    after, before = page_key(request.GET.get("after")), page_key(request.GET.get("before"))
    # each table's next image ids off its pending index, merged: the union's page is among each one's first 13
    ids = sorted({pk for rows in (texts, keywords) for pk in _next_image_ids(rows, 12 + 1, after, before)})
    page = keyset_slice(ids, 12, after=after, before=before)
    ids = page.items
    images = Image.objects.only("path", "sha256", "thumbnail", *TextProposal.Field.values).in_bulk(ids)
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
            "image": images[pk],
            "fields": [(name, getattr(images[pk], name), by_image[pk][name]) for name in TextProposal.Field.values],
            "keywords": chips[pk],
        }
        for pk in ids
        if pk in images
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


def _next_image_ids(proposals, size: int, after: int | None, before: int | None) -> list[int]:
    """The `size` image ids of pending proposals next past `after` (or before `before`), in key order."""
    ids = proposals.values_list("image_id", flat=True).distinct()
    if before is not None:
        return list(ids.filter(image_id__lt=before).order_by("-image_id")[:size])
    if after is not None:
        ids = ids.filter(image_id__gt=after)
    return list(ids.order_by("image_id")[:size])
