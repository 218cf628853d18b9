"""Celery tasks of the emotion app: the local backend on the `gpu` queue, chat backends on `llm`; thin callers."""

from django.conf import settings

from emotion import services
from tagsite.models import Job
from tagsite.services.jobs import job_task, start_job

ADVICE = (
    "Images that failed could not be decoded or the model gave no usable answer; they are retried by the next "
    "run. For the llm backend check the emotion role (admin: LLM endpoints and roles, or TAGSITE_LLM_EMOTION_URL) "
    "with `manage.py llm_check emotion`."
)


@job_task(advice=ADVICE)
def label_images_local(job, progress) -> None:
    """Label faces with the local detector and classifier (params: folder, image_ids, limit)."""
    services.run(job, progress)


@job_task(advice=ADVICE)
def label_images_llm(job, progress) -> None:
    """Label faces (or whole images) with the emotion role's chat model (params: folder, image_ids, limit, role,
    chat_input)."""
    services.run(job, progress)


def start_run(
    backend: str = "", *, image_ids=None, folder: str = "", limit: int | None = None, chat_input: str = "", user=None
) -> Job:
    """Queue a labelling run (page, API); the backend picks the queue."""
    backend = backend or settings.EMOTION_BACKEND
    if backend not in services.BACKENDS:
        raise ValueError(f"unknown emotion backend {backend!r}: one of {', '.join(services.BACKENDS)}")
    task = label_images_local if backend == "local" else label_images_llm
    params = {"backend": backend, "folder": folder, "image_ids": image_ids, "limit": limit, "chat_input": chat_input}
    return start_job("emotion", task, {key: value for key, value in params.items() if value}, user)
