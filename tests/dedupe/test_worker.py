"""The merge screen's run goes through a real Celery worker: the worker embeds with the local model, clusters and
proposes; the job records what it did."""

import pytest

from dedupe.models import MergeProposal, TagEmbedding
from dedupe.tasks import embed_tags_task
from tagsite.models import Job
from tagsite.services.jobs import start_job
from tests.conftest import wait_for
from tests.dedupe.conftest import login
from tests.dedupe.test_merge import library


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_worker_embeds_and_proposes_merges(celery_worker, client):
    library()
    login(client)
    job = start_job("embed_tags", embed_tags_task, {"limit": None})
    embedded = wait_for(lambda: Job.objects.filter(pk=job.pk, finished_at__isnull=False).first(), 60)
    assert embedded.status == "succeeded" and embedded.counts == {"embedded": 4}, embedded.message
    assert TagEmbedding.objects.count() == 4
    assert client.post("/dedupe/0/", {"action": "run", "threshold": "0.9"}).status_code == 302
    run = wait_for(lambda: Job.objects.filter(kind="dedupe_tags", finished_at__isnull=False).first(), 60)
    assert run.status == "succeeded" and run.counts == {"clusters": 1, "proposed": 1}, run.message
    assert MergeProposal.objects.get().representative_name == "t_shirt"
