"""A describe run queued through the API runs on a real Celery worker (the `llm` queue) against the loopback VLM,
the endpoint coming from the registry rows the worker reads."""

import pytest

from suggestions.models import TextProposal
from tagsite.models import Job, LLMEndpoint, LLMRole
from tests.conftest import wait_for
from tests.llm_server import OpenAITestServer, colour_rule
from tests.suggestions.conftest import add_image


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_api_queues_a_describe_run_that_the_worker_runs(celery_worker, admin_client, tmp_path):
    image = add_image(tmp_path, "blue.png", (30, 30, 220))
    with OpenAITestServer(models=["vlm"]) as server:
        server.chat_rule = colour_rule
        endpoint = LLMEndpoint.objects.create(name="loopback-vlm", base_url=server.url, model="vlm", max_parallel=2)
        for role in ("title", "caption", "keywords", "description"):
            LLMRole.objects.update_or_create(role=role, defaults={"endpoint": endpoint, "model": ""})
        answer = admin_client.post(
            "/api/describe/", {"ids": [image.pk], "stages": ["title", "caption"]}, content_type="application/json"
        )
        assert answer.status_code == 202
        job = wait_for(lambda: Job.objects.filter(pk=answer.json()["job"], finished_at__isnull=False).first(), 60)
    assert job.status == "succeeded" and job.counts["described"] == 1, (job.message, job.errors)
    assert sorted(TextProposal.objects.filter(image=image).values_list("field", "text")) == [
        ("caption", "A blue picture"), ("title", "A blue picture")
    ]  # fmt: skip
    assert admin_client.post("/api/describe/", {"ids": [image.pk], "profile": "nope"},
                             content_type="application/json").status_code == 400  # fmt: skip
