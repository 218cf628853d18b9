"""Newly ingested images are queued for tagging once their transaction has committed."""

from functools import partial

from django.conf import settings
from django.db import transaction

from suggestions.models import MLModelVersion


def queue_tagging(sender, image_ids: list[int], **kwargs) -> None:
    if not settings.SUGGESTIONS_ON_INGEST or not MLModelVersion.objects.filter(active=True).exists():
        return
    from suggestions.tasks import infer_tags

    size = settings.SUGGESTIONS_BATCH_SIZE
    for start in range(0, len(image_ids), size):
        transaction.on_commit(partial(infer_tags.delay, image_ids[start : start + size]))
