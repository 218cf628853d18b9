"""Celery tasks of the library: thin callers of the services."""

from django.conf import settings

from tagsite.services.ingest import import_folder
from tagsite.services.jobs import job_task
from tagsite.services.writeback import WRITE_ADVICE, run_write_job

IMPORT_ADVICE = (
    "The files listed could not be read; the reason is given for each. Fix or remove them and import the "
    "folder again: files already imported are only checked, not read again."
)


@job_task(advice=IMPORT_ADVICE)
def import_folder_task(job, progress) -> None:
    """Import the folder named in the job's params, inside the roots it names (None: an operator's `run` folder)
    or else TAGSITE_IMPORT_ROOTS: checked again here, since the folder may have changed since the request."""
    roots = job.params["roots"] if "roots" in job.params else settings.IMPORT_ROOTS
    import_folder(job.params["path"], progress, job.params.get("extensions"), roots=roots)


@job_task(advice=WRITE_ADVICE)
def write_metadata_task(job, progress) -> None:
    """Write approved tags into the selected files (the `io` queue: disk work never waits behind inference)."""
    run_write_job(job, progress)
