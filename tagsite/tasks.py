"""Celery tasks of the library: thin callers of the services."""

from tagsite.services.ingest import import_folder
from tagsite.services.jobs import job_task

IMPORT_ADVICE = (
    "The files listed could not be read; the reason is given for each. Fix or remove them and import the "
    "folder again: files already imported are only checked, not read again."
)


@job_task(advice=IMPORT_ADVICE)
def import_folder_task(job, progress) -> None:
    """Import the folder named in the job's params."""
    import_folder(job.params["path"], progress, job.params.get("extensions"))
