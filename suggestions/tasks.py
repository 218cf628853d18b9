"""Celery tasks of the suggestions app: thin callers of the services. `infer_*` run on the `gpu` queue."""

from celery import shared_task

from suggestions import services
from tagsite.models import Image


@shared_task(acks_late=True, reject_on_worker_lost=True)
def infer_tags(image_ids: list[int], model_id: int | None = None) -> dict[str, int]:
    """Suggest tags for these images with every active model (or one). Safe to run twice: done images are skipped."""
    totals: dict[str, int] = {}
    images = Image.objects.filter(pk__in=image_ids)
    models = services.active_models().filter(pk=model_id) if model_id else services.active_models()
    for model in models:
        for key, value in services.suggest_tags(model, services.images_to_tag(model, images)).items():
            totals[key] = totals.get(key, 0) + value
    return totals
