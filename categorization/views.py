"""The /tag_categorize page: browse and filter tags, categorise by hand or in bulk, review LLM proposals."""

from urllib.parse import urlencode

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from categorization import services
from categorization.evaluation import latest_evaluations
from categorization.models import CategoryProposal, ExtendedCategory
from categorization.tasks import start_run
from tagsite.access import permission_required, require
from tagsite.models import Job, Proposal
from tagsite.review import services as review
from tagsite.services.lists import capped_count, count_label, page_key, tag_keyset_page


def number(value: str) -> int | None:
    """A non-negative integer parameter, else None: `str.isdigit` alone lets "²" through to a failing int()."""
    return int(value) if value.isascii() and value.isdigit() else None


def filtered_tags(params) -> tuple:
    """Tags matching the page's filters (search, category, state), and the filters as read."""
    query, code, state = params.get("q", "").strip(), params.get("category", ""), params.get("state", "all")
    return services.filter_tags(query, code, state), query, code, state


@permission_required("categorization.view_extendedcategory")
def tag_categorize(request):
    tags, query, code, state = filtered_tags(request.GET)
    page = tag_keyset_page(
        tags, 100, after=page_key(request.GET.get("after")), before=page_key(request.GET.get("before"))
    )
    services.with_pending(page.items)
    filters = {"q": query, "category": code, "state": state}
    chart = services.distribution()
    biggest = max((count for _, _, count in chart), default=0) or 1
    job_id = number(request.GET.get("job", ""))
    job = Job.objects.filter(pk=job_id).first() if job_id is not None else Job.objects.filter(kind="categorize").first()
    return render(
        request,
        "categorization/tag_categorize.html",
        {
            "page": page,
            "count": count_label(*capped_count(tags)),  # stops at 1,000 tags; pages go by keyset
            "filters": urlencode({key: value for key, value in filters.items() if value}),
            "query": query,
            "category": code,
            "state": state,
            "states": services.STATES,
            "codes": [code for code, *_ in chart if code],  # the chart's categories: the selects' options
            "chart": [(c, name, n, round(100 * n / biggest, 1)) for c, name, n in chart],
            "job": job,
            "pending_total": review.capped_label(CategoryProposal.objects.filter(status=Proposal.Status.PENDING)),
            "can_review": request.user.has_perm("categorization.review_categoryproposal"),
            "evaluations": latest_evaluations(5),
        },
    )


@require_POST
def tag_categorize_action(request):
    """One form, many buttons: `set:<id>`, `accept:<id>`, `reject:<id>`, `bulk_set`, `bulk_accept`, `bulk_reject`.
    Deciding proposals needs only the review kind's permission; categorising by hand needs `categorize_tags`."""
    verb, _, tag_id = request.POST.get("action", "").partition(":")
    deciding = verb in ("accept", "bulk_accept", "reject", "bulk_reject")
    require(request.user, "categorization.review_categoryproposal" if deciding else "categorization.categorize_tags")
    selected = [tag_id] if tag_id else request.POST.getlist("tags")
    tag_ids = [pk for pk in map(number, selected) if pk is not None]
    if not tag_ids:
        messages.warning(request, "Select at least one tag.")
        return back(request)
    proposals = CategoryProposal.objects.filter(tag_id__in=tag_ids)
    if verb in ("set", "bulk_set"):
        field = f"category_{tag_id}" if tag_id else "bulk_category"
        code = request.POST.get(field, "")
        category = get_object_or_404(ExtendedCategory, code=code) if code else None
        count = services.set_category(tag_ids, category, request.user)
        messages.success(request, f"{count} tag(s) set to {category or 'uncategorised'}.")
    elif verb in ("accept", "bulk_accept"):
        messages.success(request, f"{services.accept_proposals(proposals, request.user)} proposal(s) accepted.")
    elif verb in ("reject", "bulk_reject"):
        messages.success(request, f"{services.reject_proposals(proposals, request.user)} proposal(s) rejected.")
    else:
        messages.error(request, f"Unknown action {verb!r}.")
    return back(request)


@require_POST
@permission_required("categorization.categorize_tags")
def tag_categorize_run(request):
    """Start an LLM run on the `llm` queue; the page then follows the job's progress."""
    limit = number(request.POST.get("limit", ""))
    limit = max(1, min(limit, 1_000_000)) if limit is not None else 100
    job = start_run(limit, request.user)
    messages.info(request, f"LLM categorisation of up to {limit} tags started (job #{job.pk}).")
    return redirect(f"{reverse('tag-categorize')}?job={job.pk}")


def back(request):
    return redirect(f"{reverse('tag-categorize')}?{request.POST.get('query_string', '')}")
