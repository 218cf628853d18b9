"""Seed 001's one-shot path (`image_tagger PATH`): import, tag with the active taggers, approve by an explicit
rule, write the files, with the same importer, taggers, review core and writer as everything else."""

import logging
import os

from suggestions.models import TagSuggestion
from suggestions.services.run import active_models, images_to_tag, suggest_tags
from tagsite.models import AutoApproveRule, Image, Proposal
from tagsite.review import services as review
from tagsite.services.ingest import import_folder, ingest_paths
from tagsite.services.writeback import APPEND, REPLACE, WriteOptions, write_images

log = logging.getLogger(__name__)
RULE_NAME = "image_tagger"


def tagger_rule(min_confidence: float) -> AutoApproveRule:
    """The rule `image_tagger` approves by, named in every Decision it makes; inactive, so it never acts on
    suggestions outside the command."""
    rule, _ = AutoApproveRule.objects.update_or_create(
        name=RULE_NAME,
        defaults={"kind": "tagsuggestion", "producer": None, "min_confidence": min_confidence, "active": False},
    )
    return rule


def tag_and_write(path: str, *, append: bool = False, min_confidence: float = 0.0, on_result=None) -> dict[str, int]:
    """Import `path` (a folder or one file), run every active tagger on what it has not seen, approve the pending
    suggestions at or above `min_confidence` by the `image_tagger` rule, and write the files. Returns counts."""
    path = os.path.abspath(path)
    if os.path.isdir(path):
        import_folder(path)
        images = Image.objects.filter(status=Image.Status.OK, path__startswith=os.path.join(path, ""))
    elif os.path.isfile(path):
        ingest_paths([path])
        images = Image.objects.filter(status=Image.Status.OK, path=path)
    else:
        raise ValueError(f"no such file or folder: {path}")
    counts: dict[str, int] = {"images": images.count()}
    models = list(active_models())
    if not models:
        log.warning("image_tagger: no active tagger; only the tags tagsite already holds are written")
    for model in models:
        counts["tagged"] = counts.get("tagged", 0) + suggest_tags(model, images_to_tag(model, images))["images"]
    pending = TagSuggestion.objects.filter(
        image__in=images, status=Proposal.Status.PENDING, confidence__gte=min_confidence
    ).values_list("pk", flat=True)
    rule = tagger_rule(min_confidence)
    approved = review.decide(
        kind="tagsuggestion", ids=list(pending), status=Proposal.Status.AUTO_APPROVED, via=Proposal.Via.RULE, rule=rule
    )
    counts["approved"] = len(approved)
    log.info(
        "image_tagger: rule %r approved %d suggestions (confidence >= %s)", rule.name, len(approved), min_confidence
    )
    ids = list(images.values_list("pk", flat=True))
    written = write_images(ids, WriteOptions(mode=APPEND if append else REPLACE), on_result=on_result)
    return counts | written
