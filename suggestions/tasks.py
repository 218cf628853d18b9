"""Celery tasks of the suggestions app: thin callers of the services. `infer_*` run on the `gpu` queue."""

from celery import shared_task
from django.db import transaction

from suggestions import services
from suggestions.models import MLModelVersion
from tagsite.models import Image, Job
from tagsite.services.jobs import create_job, run_job


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


@shared_task(acks_late=True)
def infer_backlog(job_id: int) -> None:
    """Tag the backlog described by the job's params (model_id or every active model, limit per model)."""
    job = Job.objects.get(pk=job_id)
    if job.finished:
        return  # redelivered after it already ran; one left running by a killed worker runs again
    model_id = job.params.get("model_id")
    models = MLModelVersion.objects.filter(pk=model_id) if model_id else services.active_models()
    with run_job(job) as progress:
        services.tag_backlog(models, progress, limit=job.params.get("limit"))


def start_backlog(model: MLModelVersion | None, limit: int | None, user=None) -> Job:
    """Queue backlog tagging (page and API alike); the task is sent once the Job row is committed."""
    params = {
        "model": str(model) if model else "every active model",
        "model_id": model.pk if model else None,
        "limit": limit,
    }
    job = create_job("suggest_tags", params, user=user)
    transaction.on_commit(lambda: infer_backlog.delay(job.pk))
    return job
