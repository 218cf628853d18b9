"""Category proposals as a review kind: approving puts the tag in the proposed category; taking the
approval back uncategorises the tag if it is still in that category."""

from collections import defaultdict

from django.urls import reverse

from categorization.models import CategoryProposal, TagCategory
from categorization.services import assign_category
from tagsite.review import ReviewKind


class CategoryProposals(ReviewKind):
    model = CategoryProposal
    label = "category proposals"
    screen = "tag-categorize"
    related = ("tag", "category")
    subject_fields = ("tag", "category")

    def apply(self, proposals: list[CategoryProposal], user) -> None:
        by_category = defaultdict(list)
        for proposal in proposals:
            by_category[proposal.category].append(proposal.tag_id)
        for category, tag_ids in by_category.items():
            assign_category(tag_ids, category)

    def revert(self, proposals: list[CategoryProposal], user) -> None:
        for proposal in proposals:
            TagCategory.objects.filter(tag_id=proposal.tag_id, category_id=proposal.category_id).delete()

    def screen_url(self, producer=None) -> str:
        """The page lists tags; its `proposal` state shows those with a pending proposal."""
        return reverse(self.screen) + "?state=proposal"

    def describe(self, proposal: CategoryProposal) -> dict:
        return {"tag": proposal.tag.name, "category": proposal.category.code}
