"""The Celery task, called directly: a job that a killed worker left running is finished on redelivery."""

import pytest

from categorization.models import CategoryProposal
from categorization.services import categorize_uncategorized
from categorization.tasks import categorize_tags_task
from tagsite.models import Job
from tagsite.services.jobs import create_job
from tests.categorization.conftest import make_tags


def test_a_redelivered_task_finishes_the_job_a_killed_worker_left_running(llm, llm_client):
    make_tags("1girl", "blue_eyes", "smile")
    job = create_job("categorize", {"limit": 3, "batch_size": 3})
    categorize_uncategorized(llm_client, limit=1)  # what the killed worker saved before it died
    Job.objects.filter(pk=job.pk).update(status=Job.Status.RUNNING, current=1, total=3)
    categorize_tags_task(job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded" and job.finished_at is not None
    assert sorted(CategoryProposal.objects.values_list("tag__name", "status")) == [
        ("1girl", "pending"), ("blue_eyes", "pending"), ("smile", "pending")
    ]  # fmt: skip


@pytest.mark.parametrize("status", ["succeeded", "failed"])
def test_a_redelivered_task_leaves_a_finished_job_alone(llm, status):
    make_tags("1girl")
    job = create_job("categorize", {"limit": 1})
    Job.objects.filter(pk=job.pk).update(status=status, message="done before")
    categorize_tags_task(job.pk)
    job.refresh_from_db()
    assert (job.status, job.message) == (status, "done before")
    assert not llm.chat_requests() and not CategoryProposal.objects.exists()


def test_a_run_records_the_endpoint_and_model_it_ran_on(llm, llm_client):
    """The job's page answers "which model": the task writes the resolved endpoint into the job's params."""
    make_tags("1girl")
    job = create_job("categorize", {"limit": 1, "batch_size": 1})
    categorize_tags_task(job.pk)
    job.refresh_from_db()
    assert job.params["model"] == llm_client.config.model and job.params["model"]
    assert job.params["base_url"] == llm_client.config.base_url and job.params["endpoint"]
    assert "api_key" not in job.params
