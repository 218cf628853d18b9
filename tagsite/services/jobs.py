"""Job records with live progress, shared by Celery tasks and management commands."""

import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.utils import timezone
from tqdm import tqdm

from tagsite.models import Job

MAX_RECORDED_ERRORS = 200


def create_job(kind: str, params: dict | None = None, user=None) -> Job:
    return Job.objects.create(kind=kind, params=params or {}, created_by=user)


def fail_interrupted_jobs() -> int:
    """Jobs left running when the only worker stopped, marked failed so nobody waits on them.

    Called when `serve` starts with the filesystem broker: that broker deletes a message as a
    worker reads it, so a task whose worker died is not redelivered.
    """
    return Job.objects.filter(status=Job.Status.RUNNING).update(
        status=Job.Status.FAILED,
        finished_at=timezone.now(),
        message="interrupted: the worker stopped while it ran; start it again",
    )


class JobProgress:
    """Keeps a Job row (and a tqdm bar in commands) current; the row is written at most twice a second."""

    def __init__(self, job: Job, bar: tqdm | None = None, interval: float = 0.5):
        self.job = job
        self.bar = bar
        self.interval = interval
        self._last_save = 0.0

    def set_total(self, total: int) -> None:
        self.job.total = total
        if self.bar is not None:
            self.bar.reset(total=total)
        self.save(force=True)

    def advance(self, steps: int = 1, **counts: int) -> None:
        self.job.current += steps
        for key, value in counts.items():
            self.count(key, value)
        if self.bar is not None:
            self.bar.update(steps)
        self.save()

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
            self.job.save()


@contextmanager
def run_job(job: Job, *, progress_bar: bool = False, description: str = "") -> Iterator[JobProgress]:
    """Mark the job running, yield its progress, and record how it ended (an exception fails it).

    A job that a killed worker left running starts again from zero: the work itself is idempotent.
    """
    job.status = Job.Status.RUNNING
    job.current, job.counts, job.errors, job.error_count, job.message = 0, {}, [], 0, ""
    job.started_at = timezone.now()
    job.save()
    bar = tqdm(total=job.total, desc=description or job.kind, unit="item") if progress_bar else None
    progress = JobProgress(job, bar)
    try:
        yield progress
    except BaseException as exc:
        job.status = Job.Status.FAILED
        job.message = job.message or f"{type(exc).__name__}: {exc}"
        raise
    else:
        job.status = Job.Status.SUCCEEDED
    finally:
        if bar is not None:
            bar.close()
        job.finished_at = timezone.now()
        job.save()
