"""Merge proposals as a review kind: approving merges the included members into the representative (aliases,
images re-pointed in bulk; the images turn dirty for the metadata writer); taking the approval back undoes the
merge from what `apply` kept; rejecting remembers the pairs as must-not-merge."""

from django.db.models import QuerySet

from dedupe import services
from dedupe.models import MergeProposal
from tagsite.models import Proposal
from tagsite.review import ReviewKind


class MergeProposals(ReviewKind):
    model = MergeProposal
    label = "tag merges"
    screen = "dedupe-review"
    related = ("representative",)
    subject_fields = ("representative",)
    decided_fields = ("undo",)

    def queryset(self) -> QuerySet:
        """Listings read the members (one query for the page) and never `undo`, every image a merge touched;
        decisions load the rows themselves, with `undo`, which revert needs."""
        return super().queryset().defer("undo").prefetch_related("members")  # in MergeMember's order

    def apply(self, proposals: list[MergeProposal], user) -> None:
        services.apply_merges(proposals, user)

    def revert(self, proposals: list[MergeProposal], user) -> None:
        services.revert_merges(proposals, user)

    def refuse(self, proposals: list[MergeProposal], status: str) -> dict[int, str]:
        """A merge whose representative was merged away or deleted meanwhile cannot be applied."""
        if status not in Proposal.APPLIED:
            return {}
        return {
            p.pk: f"the representative {p.representative_name} no longer exists: choose another"
            for p in proposals
            if p.representative_id is None and p.status not in Proposal.APPLIED
        }

    def describe(self, proposal: MergeProposal) -> dict:
        return {
            "representative": proposal.representative_name,
            "members": [
                {"tag": m.tag_id, "name": m.name, "similarity": round(m.similarity, 4), "included": m.included}
                for m in proposal.members.all()
            ],
        }
