"""Job records with live progress, shared by Celery tasks and management commands.

One way to start a job (`start_job`), one guard for redelivered tasks (`job_to_run`, wrapped into
`job_task`), and an honest end: a job whose items all failed is `failed`, one with some failures
`partial`, one a moderator stopped `cancelled`, each with a sentence a person can act on.
"""

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from celery import shared_task
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.utils import timezone
from tqdm import tqdm

from tagsite.ai.base import LLMError
from tagsite.models import Job

MAX_RECORDED_ERRORS = 200
PROGRESS_FIELDS = ["total", "current", "counts", "errors", "error_count", "message"]
OPEN = (Job.Status.QUEUED, Job.Status.RUNNING)
log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised at the next item once a moderator has cancelled the running job."""


def summarize_counts(counts: dict[str, int]) -> str:
    """A job's counts as people read them: "12 new, 3 failed" (zeros left out)."""
    return ", ".join(f"{value} {key}" for key, value in counts.items() if value)


def create_job(kind: str, params: dict | None = None, user=None) -> Job:
    return Job.objects.create(kind=kind, params=params or {}, created_by=user)


def start_job(kind: str, task, params: dict | None = None, user=None) -> Job:
    """Create the Job and queue `task(job.pk)` once the row is committed, so the worker always finds it
    (outside a transaction the task is queued at once)."""
    job = create_job(kind, params, user)
    transaction.on_commit(lambda: task.delay(job.pk))
    return job


def job_to_run(job_id: int) -> Job | None:
    """The job a task should run, or None: a redelivered task skips a finished or cancelled job (or one
    deleted meanwhile) but re-runs one a killed worker left running, since the work is idempotent."""
    job = Job.objects.filter(pk=job_id).first()
    return None if job is None or job.finished else job


def job_task(*, advice: str = "", **task_options) -> Callable:
    """Register `run(job, progress)` as a Celery task that takes a job id, behind the redelivery guard and
    inside `run_job`; `advice` is what the job page tells a person to do when items failed."""

    def register(run: Callable[[Job, "JobProgress"], object]):
        def task(job_id: int) -> None:
            if (job := job_to_run(job_id)) is not None:
                with run_job(job, advice=advice) as progress:
                    run(job, progress)

        task.__name__, task.__qualname__, task.__module__ = run.__name__, run.__qualname__, run.__module__
        task.__doc__ = run.__doc__
        return shared_task(acks_late=True, **task_options)(task)

    return register


def describe_error(exc: BaseException) -> str:
    """An exception as a sentence for the person reading the job page; the traceback stays in the log."""
    if isinstance(exc, LLMError):
        return str(exc)  # written for people where it is raised
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else ""
        return f"{exc.strerror[0].lower()}{exc.strerror[1:]}{': ' if where else ''}{where}"
    if isinstance(exc, OSError | ValueError) and str(exc):
        return str(exc)
    if isinstance(exc, DatabaseError):
        return "the database refused the work; the worker log has the details"
    return f"an unexpected error stopped it ({str(exc) or 'no message'}); the worker log has the details"


def outcome(job: Job) -> str:
    """Succeeded without errors; failed when nothing but failures were counted; partial otherwise.

    Services count what happened to their items in `counts`: the key `failed` counts items that
    failed, every other key work that was done.
    """
    if not job.error_count:
        return Job.Status.SUCCEEDED
    done = any(value for key, value in job.counts.items() if key != "failed")
    return Job.Status.PARTIAL if done else Job.Status.FAILED


def request_cancel(job: Job, user) -> bool:
    """Cancel a queued job at once, or ask a running one to stop at its next item. False when it had ended."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.finished:
            return False
        job.cancelled_by = user
        job.cancel_requested_at = timezone.now()
        fields = ["cancelled_by", "cancel_requested_at"]
        if job.status == Job.Status.QUEUED or "rolling" in job.params:  # nobody runs it as a whole: end it here
            job.status, job.finished_at = Job.Status.CANCELLED, job.cancel_requested_at
            job.message = cancelled_message(job)
            fields += ["status", "finished_at", "message"]
        job.save(update_fields=fields)
    return True


def cancelled_message(job: Job) -> str:
    who = f" by {job.cancelled_by}" if job.cancelled_by else ""
    if not job.started_at:
        return f"cancelled{who} before it started"
    return f"cancelled{who} after {job.current} of {job.total if job.total is not None else '?'} items"


def fail_interrupted_jobs() -> int:
    """Jobs left running when the only worker stopped, marked failed so nobody waits on them.

    Called when `serve` starts with the filesystem broker: that broker deletes a message as a
    worker reads it, so a task whose worker died is not redelivered.
    """
    return Job.objects.filter(status=Job.Status.RUNNING).update(
        status=Job.Status.FAILED,
        finished_at=timezone.now(),
        message="interrupted: the worker stopped while it ran",
        advice="Start it again; the work already done is kept (automatic tagging: run the backlog on the review page).",
    )


class JobProgress:
    """Keeps a Job row (and a tqdm bar in commands) current; the row is written at most twice a second,
    and each write also learns whether a moderator cancelled the job (`advance` then stops it)."""

    def __init__(self, job: Job, *, bar_description: str | None = None, interval: float = 0.5):
        self.job = job
        self.bar: tqdm | None = None
        self.bar_description = bar_description
        self.interval = interval
        self.cancelled = False
        self._last_save = 0.0

    def set_total(self, total: int) -> None:
        self.job.total = total
        if self.bar_description is not None and total and self.bar is None:  # no empty `0item` bar
            self.bar = tqdm(total=total, desc=self.bar_description, unit="item")
        elif self.bar is not None:
            self.bar.reset(total=total)
        self.save(force=True)

    def advance(self, steps: int = 1, **counts: int) -> None:
        self.job.current += steps
        for key, value in counts.items():
            self.count(key, value)
        if self.bar is not None:
            self.bar.update(steps)
        self.save()
        if self.cancelled:
            raise JobCancelled

    def count(self, key: str, value: int = 1) -> None:
        self.job.counts[key] = self.job.counts.get(key, 0) + value

    def error(self, item: str, message: str) -> None:
        self.job.error_count += 1
        if len(self.job.errors) < MAX_RECORDED_ERRORS:
            self.job.errors.append({"item": item, "error": message})
        if self.bar is not None:
            self.bar.write(f"error: {item}: {message}")

    def save(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_save >= self.interval:
            self._last_save = now
            self.write()

    def write(self) -> None:
        """Only the progress fields: a cancel request written meanwhile must survive."""
        self.job.save(update_fields=PROGRESS_FIELDS)
        self.cancelled = Job.objects.filter(pk=self.job.pk, cancel_requested_at__isnull=False).exists()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextmanager
def run_job(job: Job, *, progress_bar: bool = False, description: str = "", advice: str = "") -> Iterator[JobProgress]:
    """Mark the job running, yield its progress, and record how it ended: succeeded, partial or failed by its
    item counts (with `advice` when items failed), cancelled at a moderator's request, failed by an exception.

    A job that a killed worker left running starts again from zero: the work itself is idempotent.
    """
    job.status = Job.Status.RUNNING
    job.current, job.counts, job.errors, job.error_count, job.message, job.advice = 0, {}, [], 0, "", ""
    job.started_at = timezone.now()
    progress = JobProgress(job, bar_description=(description or job.kind) if progress_bar else None)
    try:
        job.save(update_fields=["status", "started_at", "advice"])
        progress.write()
        if progress.cancelled:  # cancelled between the guard and here
            raise JobCancelled
        yield progress
    except JobCancelled:
        job.refresh_from_db(fields=["cancelled_by", "cancel_requested_at"])
        job.status, job.message = Job.Status.CANCELLED, cancelled_message(job)
    except BaseException as exc:
        job.status = Job.Status.FAILED
        job.message = describe_error(exc)
        job.advice = advice
        raise
    else:
        job.status = outcome(job)
        if job.status != Job.Status.SUCCEEDED:
            job.advice = advice
    finally:
        progress.close()
        job.finished_at = timezone.now()
        job.save(update_fields=["status", "finished_at", "advice", *PROGRESS_FIELDS])


# Rolling jobs: work that arrives in pieces (tagging after each import chunk or upload) gathered under
# one open job per key, whose total grows as pieces are queued and which ends when the last one is done.


def add_to_rolling_job(kind: str, key: str, items: int, params: dict | None = None) -> Job:
    """The open job of this kind and key, created when none is open, with `items` more to do."""
    with transaction.atomic():
        with connection.cursor() as cursor:  # two uploads at once must not open two jobs
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"tagsite.job:{kind}:{key}"])
        job = Job.objects.select_for_update().filter(kind=kind, params__rolling=key, status__in=OPEN).first()
        if job is None:
            job = Job.objects.create(kind=kind, params={**(params or {}), "rolling": key}, total=0)
        Job.objects.filter(pk=job.pk).update(total=F("total") + items)
    job.refresh_from_db()
    return job


class ShareProgress(JobProgress):
    """One task's private tally of a rolling job; only a cancel check touches the database while it runs."""

    def write(self) -> None:
        self.cancelled = Job.objects.filter(pk=self.job.pk, status=Job.Status.CANCELLED).exists()


@contextmanager
def run_job_share(job: Job, items: int, *, advice: str = "") -> Iterator[JobProgress]:
    """Run one piece (`items` items) of a rolling job. Its steps, counts and errors are added to the row under
    its lock at the end, so tasks on several workers never overwrite each other; the piece that completes the
    total ends the job. A piece that raises counts its unfinished items as failed."""
    Job.objects.filter(pk=job.pk, status=Job.Status.QUEUED).update(status=Job.Status.RUNNING, started_at=timezone.now())
    tally = Job(pk=job.pk, kind=job.kind, counts={}, errors=[])
    progress = ShareProgress(tally)
    try:
        yield progress
    except JobCancelled:
        return
    except Exception as exc:
        unfinished = max(items - tally.current, 0)
        progress.error(f"{unfinished} of {items} items", describe_error(exc))
        progress.count("failed", unfinished)
        raise
    finally:
        _add_share(job.pk, items, tally, advice)


def _add_share(job_id: int, items: int, tally: Job, advice: str) -> None:
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.finished:
            return
        job.current += items
        for key, value in tally.counts.items():
            job.counts[key] = job.counts.get(key, 0) + value
        job.errors += tally.errors[: max(MAX_RECORDED_ERRORS - len(job.errors), 0)]
        job.error_count += tally.error_count
        job.message = summarize_counts(job.counts)
        if job.total is not None and job.current >= job.total:
            job.status, job.finished_at = outcome(job), timezone.now()
            job.advice = advice if job.status != Job.Status.SUCCEEDED else ""
        job.save()
