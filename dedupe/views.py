"""The merge screen of the review hub (/dedupe/): pending clusters with their members' counts, categories,
similarities and thumbnails, the similar tags left out; change the representative, drop or add a member,
accept or reject, one by one or the selected ones, optionally writing the affected files at once."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from dedupe import services
from dedupe.api import write_merged_files
from dedupe.models import MergeProposal
from dedupe.tasks import start_dedupe
from tagsite.access import permission_required, require
from tagsite.models import Proposal, Tag
from tagsite.review import services as review
from tagsite.services.lists import KeysetPage, page_key

PERMISSION = "dedupe.review_mergeproposal"


PAGE_SIZE = 20
ORDER = ("-confidence", "-id")  # most confident first: the index `merge_review_order`


def merge_page(proposals, size: int, after: int | None = None, before: int | None = None) -> KeysetPage:
    """The page of `size` proposals past the proposal `after`, or before `before`, or the first: a range of the
    (status, confidence, id) index from the anchor's confidence (its ties by id filtered out), never an OFFSET."""
    anchor_id = before if before is not None else after
    anchor = (
        MergeProposal.objects.filter(pk=anchor_id).values_list("confidence", flat=True).first() if anchor_id else None
    )
    if anchor is None:
        rows = list(proposals.order_by(*ORDER)[: size + 1])
        return KeysetPage(rows[:size], next_after=rows[size - 1].pk if len(rows) > size else None)
    if before is None:
        rows = list(
            proposals.filter(confidence__lte=anchor)
            .exclude(confidence=anchor, pk__gte=anchor_id)
            .order_by(*ORDER)[: size + 1]
        )
        items = rows[:size]
        return KeysetPage(
            items,
            next_after=items[-1].pk if len(rows) > size else None,
            previous_before=items[0].pk if items else None,
        )
    rows = list(
        proposals.filter(confidence__gte=anchor)
        .exclude(confidence=anchor, pk__lte=anchor_id)
        .order_by("confidence", "id")[: size + 1]
    )
    if not rows:  # the proposals before it have left the list since: the first page
        return merge_page(proposals, size)
    items = rows[:size][::-1]
    return KeysetPage(
        items,
        next_after=items[-1].pk,
        previous_before=items[0].pk if len(rows) > size else None,
    )


@permission_required("dedupe.view_mergeproposal")
def merges(request):
    """A status's clusters (pending by default), most confident first, in keyset pages (`?after=`, `?before=`)."""
    status = request.GET.get("status", Proposal.Status.PENDING)
    proposals = (
        MergeProposal.objects.filter(status=status)
        .select_related("producer")
        .defer("undo")  # every image a merge touched: the screen does not show it
        .prefetch_related("members")
    )
    if producer := request.GET.get("producer", ""):
        proposals = proposals.filter(producer_id=int(producer) if producer.isdigit() else 0)
    page = merge_page(
        proposals, PAGE_SIZE, after=page_key(request.GET.get("after")), before=page_key(request.GET.get("before"))
    )
    rows = page.items
    thumbs = services.thumbnails({m.tag_id for p in rows for m in p.members.all() if m.tag_id})
    for proposal in rows:
        proposal.rows = [(m, thumbs.get(m.tag_id, [])) for m in proposal.members.all()]
    query = request.GET.copy()
    for key in ("after", "before"):
        query.pop(key, None)
    return render(
        request,
        "dedupe/merges.html",
        {
            "page": page,
            "proposals": rows,
            "query": query.urlencode(),
            "status": status,
            "statuses": Proposal.Status.choices,
            "pending_total": review.capped_label(MergeProposal.objects.filter(status=Proposal.Status.PENDING)),
            "can_review": request.user.has_perm(PERMISSION),
            "space": services.active_space(),
            "threshold": services.RECOMMENDED_THRESHOLD,
        },
    )


@require_POST
def merge_action(request, pk: int):
    """One form per cluster, many buttons: `representative:<tag>`, `drop:<tag>`, `add:<tag>`, `approve`,
    `reject`; `pk` 0 with `ids` decides the selected clusters."""
    require(request.user, PERMISSION)
    verb, _, value = request.POST.get("action", "").partition(":")
    tag_id = int(value) if value.isdigit() else None
    write = request.POST.get("write") == "on"
    try:
        if verb in ("approve", "reject"):
            ids = [pk] if pk else [int(i) for i in request.POST.getlist("ids") if i.isdigit()]
            status = Proposal.Status.APPROVED if verb == "approve" else Proposal.Status.REJECTED
            outcome = review.decide(kind="mergeproposal", ids=ids, status=status, user=request.user, via="page")
            messages.success(request, f"{len(outcome)} merge(s) {status}.")
            for reason in outcome.refused.values():
                messages.warning(request, reason)
            if write and verb == "approve" and (job := write_merged_files(outcome.changed, request.user)):
                messages.info(request, f"Writing the affected files (job #{job.pk}).")
        elif verb == "run":
            job = start_dedupe(request.user, float(request.POST.get("threshold") or services.DEFAULT_THRESHOLD))
            messages.info(request, f"Looking for duplicate tags (job #{job.pk}).")
        elif tag_id is not None and verb in ("representative", "drop", "add"):
            proposal = get_object_or_404(MergeProposal, pk=pk)
            edit = {
                "representative": services.set_representative,
                "drop": lambda p, t: services.drop_member(p, t, request.user),
                "add": services.add_member,
            }[verb]
            edit(proposal, tag_id)
            name = Tag.objects.filter(pk=tag_id).values_list("name", flat=True).first() or tag_id
            messages.success(request, f"#{pk}: {verb} {name}.")
        else:
            messages.error(request, f"Unknown action {verb!r}.")
    except services.MergeError as exc:
        messages.error(request, str(exc))
    return redirect(f"{reverse('dedupe-review')}?{request.POST.get('query_string', '')}")
