"""Celery tasks of dedupe (embedding runs on the `gpu` queue, beside the other local models): thin callers."""

from dedupe import services
from tagsite.models import Job
from tagsite.services.jobs import job_task, start_job

ADVICE = (
    "Check the embed role's endpoint (admin: LLM roles; without one the local MiniLM model is used) with "
    "`manage.py llm_check embed`, then start the run again: tags already embedded are kept."
)


@job_task(advice=ADVICE)
def embed_tags_task(job, progress) -> None:
    """Embed the tags that are missing or stale in the embed role's space (params: batch_size, limit)."""
    with services.client_for_options() as client:
        space = services.space_for(client, job.params.get("prefix", ""))
        job.params = {**job.params, **client.config.described(), "space": space.pk}
        job.save(update_fields=["params"])
        services.embed_tags(
            client, space, batch_size=job.params.get("batch_size", 64), limit=job.params.get("limit"), progress=progress
        )


@job_task(advice=ADVICE)
def dedupe_tags_task(job, progress) -> None:
    """Cluster the active space's tags and propose each cluster as a merge (params: threshold, min_cluster_size)."""
    space = services.active_space()
    if space is None:
        raise ValueError("no tag embeddings yet: run embed_tags first")
    clusters = services.find_clusters(
        space,
        threshold=job.params.get("threshold", services.DEFAULT_THRESHOLD),
        min_cluster_size=job.params.get("min_cluster_size", 2),
    )
    progress.set_total(len(clusters))
    proposals = services.propose(clusters, space.producer, job)
    progress.advance(len(clusters), clusters=len(clusters), proposed=len(proposals))


def start_dedupe(user=None, threshold: float = services.DEFAULT_THRESHOLD) -> Job:
    return start_job("dedupe_tags", dedupe_tags_task, {"threshold": threshold}, user)
