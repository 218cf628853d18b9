"""Pages: the review queue, the unmapped-label worklist and the learning-from-review report."""

from collections import defaultdict

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.shortcuts import redirect, render

from suggestions import services
from suggestions.models import MLModelVersion, TagSuggestion, UnmappedTag
from tagsite.models import Tag

CATEGORY_ORDER = [Tag.DanbooruCategory.CHARACTER, Tag.DanbooruCategory.COPYRIGHT, Tag.DanbooruCategory.ARTIST]
REVIEW = "suggestions.review_tagsuggestion"


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def review_queue(request):
    """Images with suggestions, tags grouped by category; decisions go through the API without reloads."""
    filters = {
        "status": request.GET.get("status", TagSuggestion.Status.PENDING),
        "model": request.GET.get("model", ""),
        "tag": request.GET.get("tag", "").strip(),
        "min_confidence": _float(request.GET.get("min_confidence")),
        "max_confidence": _float(request.GET.get("max_confidence")),
    }
    images, suggestions = services.review_queue(**filters)
    page = Paginator(images, 12).get_page(request.GET.get("page"))
    by_image: dict[int, dict[int, list[TagSuggestion]]] = defaultdict(lambda: defaultdict(list))
    for suggestion in suggestions.filter(image__in=list(page)).order_by("-confidence"):
        by_image[suggestion.image_id][suggestion.category].append(suggestion)
    order = lambda category: (CATEGORY_ORDER.index(category) if category in CATEGORY_ORDER else 9, category)  # noqa: E731
    cards = [
        {
            "image": image,
            "groups": [
                (Tag.DanbooruCategory(category).label, items)
                for category, items in sorted(by_image[image.pk].items(), key=lambda item: order(item[0]))
            ],
        }
        for image in page
    ]
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "suggestions/review.html",
        {
            "cards": cards,
            "page": page,
            "filters": filters,
            "query": query.urlencode(),
            "statuses": TagSuggestion.Status.choices,
            "model_names": MLModelVersion.objects.order_by("name").values_list("name", flat=True).distinct(),
            "threshold": settings.SUGGESTIONS_DEFAULT_THRESHOLDS["general"] + 0.15,
            "can_review": request.user.has_perm(REVIEW),
            "active_models": MLModelVersion.objects.filter(active=True),
        },
    )


def unmapped(request):
    """The worklist: map labels to a tag, to tags of their own names, or ignore them, in bulk."""
    if request.method == "POST":
        if not request.user.has_perm(REVIEW):
            raise PermissionDenied
        entries = UnmappedTag.objects.filter(pk__in=request.POST.getlist("ids"))
        action = request.POST.get("action", "")
        try:
            count = services.resolve_worklist(entries, action, request.POST.get("tag", "").strip(), request.user)
        except (ValueError, KeyError) as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"{count} label{'s' if count != 1 else ''}: {action.replace('_', ' ')}")
        return redirect(request.get_full_path())
    source = request.GET.get("source", "")
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
        if not request.user.has_perm(REVIEW):
            raise PermissionDenied
        chosen: dict[int, dict[str, float]] = defaultdict(dict)
        for value in request.POST.getlist("apply"):
            model_id, threshold, label = value.split(":", 2)
            chosen[int(model_id)][label] = float(threshold)
        for model in MLModelVersion.objects.filter(pk__in=chosen):
            services.apply_thresholds(model, chosen[model.pk])
        messages.success(request, f"Applied {sum(len(v) for v in chosen.values())} label thresholds.")
        return redirect(request.get_full_path())
    target = _float(request.GET.get("target")) or settings.SUGGESTIONS_TARGET_PRECISION
    model = request.GET.get("model", "")
    versions = MLModelVersion.objects.filter(name=model) if model else None
    return render(
        request,
        "suggestions/report.html",
        {
            "rows": services.review_report(versions, target),
            "target": target,
            "model": model,
            "model_names": MLModelVersion.objects.order_by("name").values_list("name", flat=True).distinct(),
            "can_review": request.user.has_perm(REVIEW),
        },
    )
