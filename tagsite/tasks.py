"""Celery tasks of the library: thin callers of the services."""

from celery import shared_task

from tagsite.models import Job
from tagsite.services.ingest import import_folder
from tagsite.services.jobs import run_job


@shared_task(acks_late=True)
def import_folder_task(job_id: int) -> None:
    """Import the folder named in the job's params."""
    job = Job.objects.get(pk=job_id)
    if job.finished:
        return  # redelivered after it already ran
    with run_job(job) as progress:
        import_folder(job.params["path"], progress, job.params.get("extensions"))
