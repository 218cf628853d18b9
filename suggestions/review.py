"""Tag suggestions as a review kind: approving tags the image (with what the tag implies), taking the
approval back removes exactly what it added. Text proposals (VLM titles, captions, descriptions): approving
stores the text on the image, taking it back restores the text it replaced."""

from collections import defaultdict
from urllib.parse import urlencode

from django.urls import reverse

from suggestions.models import MODEL_VERSION_LIST_DEFER, TagSuggestion, TextProposal
from tagsite.models import Image, ImageTag, Proposal
from tagsite.review import ReviewKind
from tagsite.services.lists import related_defer
from tagsite.services.tags import Tagging, tag_images, untag_images


class TagSuggestions(ReviewKind):
    model = TagSuggestion
    label = "tag suggestions"
    screen = "suggestions-review"
    related = ("tag", "model_version")
    listed = ("tag",)  # describe reads the model version's id alone
    deferred = related_defer("model_version", MODEL_VERSION_LIST_DEFER)
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


class TextProposals(ReviewKind):
    model = TextProposal
    label = "titles, captions and descriptions"
    screen = "suggestions-texts"
    related = ("image",)
    subject_fields = ("image",)
    decided_fields = ("previous_text",)

    def apply(self, proposals: list[TextProposal], user) -> None:
        """The image's text becomes the proposal's; a later approval of the same field wins (id order)."""
        images = Image.objects.in_bulk({p.image_id for p in proposals})
        for proposal in proposals:
            image = images[proposal.image_id]
            proposal.previous_text = getattr(image, proposal.field)
            setattr(image, proposal.field, proposal.text)
        Image.objects.bulk_update(images.values(), ["title", "caption", "description"])

    def revert(self, proposals: list[TextProposal], user) -> None:
        """Only while the image still holds this proposal's text (a person or a later approval may have moved on)."""
        images = Image.objects.in_bulk({p.image_id for p in proposals})
        for proposal in proposals:
            image = images[proposal.image_id]
            if getattr(image, proposal.field) == proposal.text:
                setattr(image, proposal.field, proposal.previous_text)
        Image.objects.bulk_update(images.values(), ["title", "caption", "description"])

    def refuse(self, proposals: list[TextProposal], status: str) -> dict[int, str]:
        """One pending proposal per image, field and producer: a decided one waits while its producer has a newer
        pending one."""
        if status != Proposal.Status.PENDING:
            return {}
        keys = {(p.image_id, p.field, p.producer_id) for p in proposals}
        pending = {
            (image_id, name, producer_id): pk
            for pk, image_id, name, producer_id in TextProposal.objects.filter(
                image_id__in={key[0] for key in keys}, status=Proposal.Status.PENDING
            ).values_list("pk", "image_id", "field", "producer_id")
        }
        refused = {}
        for proposal in proposals:
            key = (proposal.image_id, proposal.field, proposal.producer_id)
            if key in pending and pending[key] != proposal.pk:
                refused[proposal.pk] = f"a newer {proposal.field} (#{pending[key]}) is pending: decide that one first"
            else:
                pending[key] = proposal.pk
        return refused

    def describe(self, proposal: TextProposal) -> dict:
        return {"image": proposal.image_id, "field": proposal.field, "text": proposal.text}
