"""Newly ingested images are queued for tagging (as each active model's rolling job) once their
transaction has committed."""

from django.conf import settings

from suggestions.models import MLModelVersion


def queue_tagging(sender, image_ids: list[int], **kwargs) -> None:
    if not settings.SUGGESTIONS_ON_INGEST:
        return
    from suggestions.tasks import queue_auto_tagging

    queue_auto_tagging(image_ids, MLModelVersion.objects.filter(active=True).exclude(kind=MLModelVersion.Kind.VLM))
