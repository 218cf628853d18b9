"""Category proposals as a review kind: approving puts the tag in the proposed category (the category it had
is kept on the proposal); taking the approval back restores that category if the tag is still in the proposed one."""

from collections import defaultdict

from django.urls import reverse

from categorization.models import CategoryProposal, ExtendedCategory, TagCategory
from categorization.services import assign_category
from tagsite.models import Proposal
from tagsite.review import ReviewKind


def current_categories(proposals: list[CategoryProposal]) -> dict[int, int]:
    """Tag id -> category id now, for the proposals' tags."""
    tag_ids = {p.tag_id for p in proposals}
    return dict(TagCategory.objects.filter(tag_id__in=tag_ids).values_list("tag_id", "category_id"))


class CategoryProposals(ReviewKind):
    model = CategoryProposal
    label = "category proposals"
    screen = "tag-categorize"
    related = ("tag", "category")
    subject_fields = ("tag", "category")
    decided_fields = ("previous_category",)

    def apply(self, proposals: list[CategoryProposal], user) -> None:
        before = current_categories(proposals)
        by_category = defaultdict(list)
        for proposal in proposals:
            proposal.previous_category_id = before.get(proposal.tag_id)
            by_category[proposal.category].append(proposal.tag_id)
        for category, tag_ids in by_category.items():
            assign_category(tag_ids, category)

    def revert(self, proposals: list[CategoryProposal], user) -> None:
        """A tag moved on since (by hand or by another proposal) keeps where it is now."""
        now = current_categories(proposals)
        by_previous = defaultdict(list)
        for proposal in proposals:
            if now.get(proposal.tag_id) == proposal.category_id:
                by_previous[proposal.previous_category_id].append(proposal.tag_id)
        categories = ExtendedCategory.objects.in_bulk([pk for pk in by_previous if pk is not None])
        for previous, tag_ids in by_previous.items():
            assign_category(tag_ids, categories.get(previous))

    def refuse(self, proposals: list[CategoryProposal], status: str) -> dict[int, str]:
        """A tag has at most one pending proposal: one taken back to pending waits while another is pending."""
        if status != Proposal.Status.PENDING:
            return {}
        pending = dict(
            CategoryProposal.objects.filter(tag_id__in={p.tag_id for p in proposals}, status=Proposal.Status.PENDING)
            .exclude(pk__in=[p.pk for p in proposals])
            .values_list("tag_id", "pk")
        )
        refused = {}
        for proposal in proposals:
            if proposal.tag_id in pending:
                refused[proposal.pk] = (
                    f"{proposal.tag.name} already has a pending proposal (#{pending[proposal.tag_id]}): "
                    "decide that one first"
                )
            else:
                pending[proposal.tag_id] = proposal.pk  # the next one for the same tag in this batch waits
        return refused

    def screen_url(self, producer=None) -> str:
        """The page lists tags with a pending proposal (its `proposal` state) but has no producer filter: one
        producer's pending proposals are the review API's listing."""
        if producer is not None:
            return self.api_url(producer)
        return reverse(self.screen) + "?state=proposal"

    def describe(self, proposal: CategoryProposal) -> dict:
        return {"tag": proposal.tag.name, "category": proposal.category.code}
