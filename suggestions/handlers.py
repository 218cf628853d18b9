"""Newly ingested images are queued for tagging (as each active model's rolling job) once their
transaction has committed."""

from django.conf import settings


def queue_tagging(sender, image_ids: list[int], **kwargs) -> None:
    if not settings.SUGGESTIONS_ON_INGEST:
        return
    from suggestions.services import active_models
    from suggestions.tasks import queue_auto_tagging

    queue_auto_tagging(image_ids, active_models())
