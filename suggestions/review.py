"""Tag suggestions as a review kind: approving tags the image (with what the tag implies), taking the
approval back removes exactly what it added."""

from collections import defaultdict
from urllib.parse import urlencode

from django.urls import reverse

from suggestions.models import TagSuggestion
from tagsite.models import ImageTag, Proposal
from tagsite.review import ReviewKind
from tagsite.services.tags import Tagging, tag_images, untag_images


class TagSuggestions(ReviewKind):
    model = TagSuggestion
    label = "tag suggestions"
    screen = "suggestions-review"
    related = ("image", "tag", "model_version")
    subject_fields = ("tag", "image")

    def apply(self, proposals: list[TagSuggestion], user) -> None:
        taggings = [Tagging(s.image_id, s.tag_id, str(s.model_version)) for s in proposals]
        tag_images(taggings, source=ImageTag.Source.MODEL, user=user)

    def revert(self, proposals: list[TagSuggestion], user) -> None:
        """Another approved suggestion of the same tag for the same image (another model's) keeps it."""
        keep: dict[int, set[int]] = defaultdict(set)
        others = (
            TagSuggestion.objects.filter(image_id__in={s.image_id for s in proposals}, status__in=Proposal.APPLIED)
            .exclude(pk__in=[s.pk for s in proposals])
            .values_list("image_id", "tag_id")
        )
        for image_id, tag_id in others:
            keep[image_id].add(tag_id)
        untag_images([(s.image_id, s.tag_id) for s in proposals], keep=keep)

    def screen_url(self, producer=None) -> str:
        """The review page filters by model name."""
        return reverse(self.screen) + (f"?{urlencode({'model': producer.name})}" if producer else "")

    def describe(self, proposal: TagSuggestion) -> dict:
        return {
            "image": proposal.image_id,
            "tag": proposal.tag.name,
            "external_tag": proposal.external_tag,
            "model_version": proposal.model_version_id,
        }
