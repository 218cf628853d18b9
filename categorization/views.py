"""The /tag_categorize page: browse and filter tags, categorise by hand or in bulk, review LLM proposals."""

from html import escape
from urllib.parse import urlencode

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.safestring import SafeString, mark_safe
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
    services.with_pending_values(page.items)
    filters = {"q": query, "category": code, "state": state}
    chart = services.distribution()
    biggest = max((count for _, _, count in chart), default=0) or 1
    job_id = number(request.GET.get("job", ""))
    jobs = Job.objects.defer("params", "counts", "errors")  # the box shows its progress, not its error list
    job = jobs.filter(pk=job_id).first() if job_id is not None else jobs.filter(kind="categorize").first()
    return render(
        request,
        "categorization/tag_categorize.html",
        {
            "page": page,
            "rows": tag_rows(page.items),
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


# The table's rows, written here rather than in the template: 24 template variables a row were most of the page's
# CPU (9 ms for 100 rows). Text is escaped as a template escapes a variable (the values are the database's plain
# strings, never marked safe); ids and counts as plain numbers.
TAG_ROW = """
    <tr data-tag="{name}"{card}>
      <td><input type="checkbox" name="tags" value="{id}" aria-label="Select {name}"></td>
      <td class="name"><span>{display_name}</span>
        <details class="similar" data-tag="{id}"><summary class="small muted">similar</summary>\
<span class="similar-list small"></span></details></td>
      <td class="numbers">{usage_count}</td>
      <td class="current">
        <select name="category_{id}" class="category-select" aria-label="Category of {name}">
          <option value="{code}" selected>{code_label}</option>
        </select>
        <button type="submit" name="action" value="set:{id}" class="small-button">Set</button>
      </td>
      <td class="proposal">
        {proposal}
      </td>
    </tr>
    """
PROPOSAL = """
        <span class="proposed {status}" data-proposal data-id="{id}" data-confidence="{confidence}" \
title="{producer}">{code} <span class="muted">{confidence_short}</span>
        {evidence}
        <button type="submit" name="action" value="accept:{tag}" data-decision="approved" \
class="small-button good">Accept</button>
        <button type="submit" name="action" value="reject:{tag}" data-decision="rejected" \
class="small-button bad">Reject</button></span>
        """
NO_PROPOSAL = '<span class="muted">-</span>'
NO_TAGS = '\n    <tr><td colspan="5" class="muted">No tags match.</td></tr>\n    '


def tag_rows(tags: list[dict]) -> SafeString:
    """The rows of the tags (with their `pending_proposal`, `with_pending_values`) as the table's body."""
    if not tags:
        return mark_safe(NO_TAGS)
    rows = []
    for tag in tags:
        proposal, tag_id, code = tag["pending_proposal"], tag["id"], tag["category_code"]
        rows.append(
            TAG_ROW.format(
                name=escape(tag["name"]),
                card=" data-review-card" if proposal else "",
                id=tag_id,
                display_name=escape(tag["display_name"]),
                usage_count=tag["usage_count"],
                code=escape(code or ""),
                code_label=escape(code or "uncategorised"),
                proposal=proposal_cell(proposal, tag_id) if proposal else NO_PROPOSAL,
            )
        )
    return mark_safe("\n    " + "".join(f"\n    {row}\n    " for row in rows) + "\n    ")  # the template's lines


def proposal_cell(proposal: dict, tag_id: int) -> str:
    """A pending proposal's category, confidence, the evidence beside it and its buttons."""
    code, second = proposal["category_code"], proposal["second_code"]
    llm, knn = proposal["llm_code"], proposal["knn_code"]
    line = "\n        "  # the template's line between its branches: after each but the last
    if second and second != code:
        evidence = (
            f'<span class="evidence disputed" title="Asked twice, answered {escape(second)} the second time">'
            f"disputed: {escape(second)}</span>{line}"
        )
    elif llm:
        evidence = (
            '<span class="evidence muted" title="The labelled neighbours\' strong vote overrode the LLM">'
            f"kNN over LLM: {escape(llm)}</span>{line}"
        )
    elif knn == code:
        evidence = f'<span class="evidence muted" title="The labelled neighbours vote the same">kNN agrees</span>{line}'
    elif knn:
        evidence = (
            f'<span class="evidence muted" title="The labelled neighbours vote otherwise">kNN: {escape(knn)}</span>'
        )
    else:
        evidence = ""
    return PROPOSAL.format(
        status=escape(proposal["status"]),
        id=proposal["id"],
        confidence=number_format(proposal["confidence"], ".4f"),
        producer=escape(proposal["producer"]),
        code=escape(str(code)),
        confidence_short=number_format(proposal["confidence"], ".2f"),
        evidence=evidence,
        tag=tag_id,
    )


def number_format(value, spec: str) -> str:
    """The template's `stringformat` filter: "" for a value it cannot format."""
    try:
        return ("%" + spec) % value
    except (ValueError, TypeError):
        return ""


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
