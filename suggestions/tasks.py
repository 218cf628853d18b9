"""Celery tasks of the suggestions app: thin callers of the services. `infer_*` run on the `gpu` queue,
`describe_*` on the `llm` queue."""

from collections.abc import Iterable
from functools import partial

from celery import shared_task
from django.conf import settings
from django.db import transaction

from suggestions import services
from suggestions.models import MLModelVersion
from suggestions.services.describe import DescribeOptions, run_describe_job
from tagsite.models import Image, Job
from tagsite.services.jobs import add_to_rolling_job, job_task, job_to_run, run_job_share, start_job

ADVICE = (
    "The images listed could not be decoded or tagged; the reason is given for each. The rest were tagged. "
    "Fix or remove those files; a backlog run (review page or `manage.py suggest_tags`) picks them up again."
)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def infer_tags(image_ids: list[int], model_id: int, job_id: int) -> None:
    """Suggest tags for newly ingested images with one model: a piece of that model's rolling auto-tagging job.
    Safe to run twice: images the model version has done are skipped."""
    if (job := job_to_run(job_id)) is None:
        return  # cancelled, or redelivered after the job ended
    with run_job_share(job, len(image_ids), advice=ADVICE) as progress:
        model = MLModelVersion.objects.filter(pk=model_id, active=True).first()
        if model is None:
            raise LookupError(f"model version #{model_id} was deactivated or removed before these images were tagged")
        todo = services.images_to_tag(model, Image.objects.filter(pk__in=image_ids))
        for key, value in services.suggest_tags(model, todo, progress=progress).items():
            progress.count(key, value)


def queue_auto_tagging(image_ids: list[int], models: Iterable[MLModelVersion]) -> list[Job]:
    """Queue tagging of new images, in tasks of SUGGESTIONS_BATCH_SIZE, as pieces of each model's rolling
    `auto_tag` job. One open job per model whose total grows, not a job per batch: uploads arrive one file
    at a time and an import in chunks, and one row per model says when its review queue is complete."""
    jobs = []
    size = settings.SUGGESTIONS_BATCH_SIZE
    for model in models:
        params = {"model": str(model), "model_id": model.pk}
        job = add_to_rolling_job("auto_tag", str(model.pk), len(image_ids), params)
        for start in range(0, len(image_ids), size):
            transaction.on_commit(partial(infer_tags.delay, image_ids[start : start + size], model.pk, job.pk))
        jobs.append(job)
    return jobs


@job_task(advice=ADVICE)
def infer_backlog(job, progress) -> None:
    """Tag the backlog described by the job's params (model_id or every active model, limit per model)."""
    model_id = job.params.get("model_id")
    models = MLModelVersion.objects.filter(pk=model_id) if model_id else services.active_models()
    services.tag_backlog(models, progress, limit=job.params.get("limit"))


def start_backlog(model: MLModelVersion | None, limit: int | None, user=None) -> Job:
    """Queue backlog tagging (page and API alike)."""
    params = {
        "model": str(model) if model else "every active model",
        "model_id": model.pk if model else None,
        "limit": limit,
    }
    return start_job("suggest_tags", infer_backlog, params, user)


DESCRIBE_ADVICE = (
    "The images listed got no answer for some stages (the reason is given for each); their other stages were "
    "stored for review. Check the endpoint with `manage.py llm_check`, then run again: done stages are skipped."
)


@job_task(advice=DESCRIBE_ADVICE)
def describe_run(job, progress) -> None:
    """The VLM stages over the job's images (`llm` queue); the audit goes to the job's folder."""
    run_describe_job(job, progress)


def start_describe(image_ids: list[int], options: dict, user=None) -> Job:
    """Queue a describe run (pages and API alike); bad options are refused at once."""
    DescribeOptions(**options)
    return start_job("describe_images", describe_run, {"image_ids": list(image_ids), "options": options}, user)
