"""Emotion labels as a review kind: approving may tag the image `emotion:<label>` (TAGSITE_EMOTION_IMAGE_TAGS);
taking the approval back removes that tag unless another approved face of the image keeps it."""

from collections import defaultdict

from django.conf import settings

from emotion.models import EmotionProposal
from emotion.services import IMAGE_PROMPT_VERSION
from tagsite.models import ImageTag, Proposal
from tagsite.review import ReviewKind
from tagsite.services.lists import IMAGE_LIST_DEFER, related_defer
from tagsite.services.tags import Tagging, get_or_create_tags, tag_images, untag_images

TAG_PREFIX = "emotion:"


def label_tags(proposals: list[EmotionProposal]) -> dict[str, int]:
    """Tag id per label name, for the labels of these proposals (tags made on first use)."""
    names = {TAG_PREFIX + p.label.name for p in proposals}
    return {name.removeprefix(TAG_PREFIX): tag.pk for name, tag in get_or_create_tags(names).items()}


class EmotionLabels(ReviewKind):
    model = EmotionProposal
    label = "emotion labels"
    screen = "emotion-review"
    related = ("image", "label", "proposed_label", "face")
    deferred = related_defer("image", IMAGE_LIST_DEFER)  # sidecars, metadata...: only the image's path is read
    subject_fields = ("image", "label")

    def apply(self, proposals: list[EmotionProposal], user) -> None:
        if not settings.EMOTION_IMAGE_TAGS:
            return
        tags = label_tags(proposals)
        taggings = [Tagging(p.image_id, tags[p.label.name], str(p.producer)) for p in proposals]
        tag_images(taggings, source=ImageTag.Source.MODEL, user=user)

    def revert(self, proposals: list[EmotionProposal], user) -> None:
        if not settings.EMOTION_IMAGE_TAGS:
            return
        tags = label_tags(proposals)
        keep: dict[int, set[int]] = defaultdict(set)
        others = (
            EmotionProposal.objects.filter(image_id__in={p.image_id for p in proposals}, status__in=Proposal.APPLIED)
            .exclude(pk__in=[p.pk for p in proposals])
            .values_list("image_id", "label__name")
        )
        for image_id, name in others:
            if name in tags:
                keep[image_id].add(tags[name])
        untag_images([(p.image_id, tags[p.label.name]) for p in proposals], keep=keep)

    def summary(self, proposal: EmotionProposal) -> str:
        """`happy 0.97 · largest face · then neutral 0.02` (and what the model said, if a moderator changed it)."""
        face = proposal.face
        text = f"{proposal.label.name} {proposal.confidence:.2f}"
        if proposal.proposed_label_id != proposal.label_id:
            text = f"{proposal.label.name} (the model said {proposal.proposed_label.name} {proposal.confidence:.2f})"
        if proposal.producer.prompt_version == IMAGE_PROMPT_VERSION:
            text += " · whole image"
        else:
            text += " · largest face" if face.index == 0 else f" · face {face.index + 1} by size"
        runners = sorted(face.probabilities.items(), key=lambda item: -item[1])[1:2]
        return text + "".join(f" · then {name} {value:.2f}" for name, value in runners)

    def describe(self, proposal: EmotionProposal) -> dict:
        face = proposal.face
        return {
            "image": proposal.image_id,
            "path": proposal.image.path,
            "label": proposal.label.name,
            "proposed_label": proposal.proposed_label.name if proposal.proposed_label_id != proposal.label_id else "",
            "face": {"index": face.index, "box": list(face.box), "detection_confidence": face.detection_confidence},
            "probabilities": face.probabilities,
        }
