"""Celery tasks of categorisation (routed to the `llm` queue): thin callers of the services."""

from celery import shared_task
from django.db import transaction

from categorization.services import categorize_uncategorized
from tagsite.ai.registry import client_for, resolve_role
from tagsite.models import Job
from tagsite.services.jobs import create_job, run_job


@shared_task(acks_late=True)
def categorize_tags_task(job_id: int) -> None:
    """Run the LLM categorisation described by the job's params (limit, skip, dry_run, request_size, role)."""
    job = Job.objects.get(pk=job_id)
    if job.status in (Job.Status.SUCCEEDED, Job.Status.FAILED):
        return  # redelivered after it finished; a `running` one lost its worker and runs again (idempotent)
    params = job.params
    with run_job(job) as progress:
        with client_for(resolve_role(params.get("role", "categorize"))) as client:
            categorize_uncategorized(
                client,
                batch_size=params.get("batch_size", 100),
                limit=params.get("limit"),
                skip=params.get("skip", 0),
                dry_run=params.get("dry_run", False),
                request_size=params.get("request_size"),
                progress=progress,
            )


def start_run(limit: int, user=None) -> Job:
    """Queue an LLM run over the `limit` most used uncategorised tags (page and API alike); the task is
    sent once the Job row is committed, so the worker always finds it."""
    job = create_job("categorize", {"limit": limit, "batch_size": limit}, user=user)
    transaction.on_commit(lambda: categorize_tags_task.delay(job.pk))
    return job
