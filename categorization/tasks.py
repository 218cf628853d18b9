"""Celery tasks of categorisation (routed to the `llm` queue): thin callers of the services."""

from categorization.services import categorize_uncategorized
from tagsite.ai.registry import client_for, resolve_role
from tagsite.models import Job
from tagsite.services.jobs import job_task, start_job

ADVICE = (
    "Check the LLM endpoint of the categorize role: configure it in admin (LLM endpoints and LLM roles) or "
    "with TAGSITE_LLM_CATEGORIZE_URL, then run `manage.py llm_check categorize` until every check passes, "
    "and start the run again."
)


@job_task(advice=ADVICE)
def categorize_tags_task(job, progress) -> None:
    """Run the LLM categorisation described by the job's params (limit, skip, dry_run, request_size, role, twice)."""
    params = job.params
    config = resolve_role(params.get("role", "categorize"))
    job.params = {**params, **config.described()}  # the job's page says which endpoint and model ran it
    job.save(update_fields=["params"])
    with client_for(config) as client:
        categorize_uncategorized(
            client,
            batch_size=params.get("batch_size", 100),
            limit=params.get("limit"),
            skip=params.get("skip", 0),
            dry_run=params.get("dry_run", False),
            request_size=params.get("request_size"),
            twice=params.get("twice", False),
            first_pass={"knn": True, "none": False}.get(params.get("first_pass") or ""),
            progress=progress,
        )


def start_run(limit: int, user=None) -> Job:
    """Queue an LLM run over the `limit` most used uncategorised tags (page and API alike)."""
    return start_job("categorize", categorize_tags_task, {"limit": limit, "batch_size": limit}, user)
