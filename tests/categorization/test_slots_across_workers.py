"""Two real Celery workers on the `llm` queue share one endpoint's parallel slots (issue 4)."""

import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from django.db import connection

from categorization.models import CategoryProposal
from categorization.tasks import categorize_tags_task
from tagsite.ai.slots import slot_key
from tagsite.celery import app
from tagsite.models import Job
from tagsite.services.jobs import create_job
from tests.categorization.conftest import make_tags, point_local_endpoint_at
from tests.conftest import database_url, start_worker, stop_worker, wait_for
from tests.llm_server import OpenAITestServer, categorize_rule

SLOTS, TAGS_PER_JOB, REQUEST_SIZE = 2, 200, 10


@contextmanager
def every_slot_held(base_url: str, slots: int):
    """This process takes every slot of the server, each by number: `endpoint_slot` twice on one session
    could take the same slot twice, as advisory locks are reentrant per session."""
    key = slot_key(base_url)
    with connection.cursor() as cursor:
        for slot in range(slots):
            cursor.execute("SELECT pg_advisory_lock(%s, %s)", [key, slot])
        try:
            yield
        finally:
            for slot in range(slots):
                cursor.execute("SELECT pg_advisory_unlock(%s, %s)", [key, slot])


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_two_workers_never_exceed_the_endpoint_slots(tmp_path):
    names = [f"tag_{i:03}" for i in range(2 * TAGS_PER_JOB)]
    make_tags(*names)
    session_worker = [f"test-{os.getpid()}@{os.uname().nodename}"]
    app.control.cancel_consumer("llm", destination=session_worker, reply=True)  # if running, it takes none of ours
    env = {**os.environ, "DATABASE_URL": database_url()}
    logs = [tmp_path / "llm-a.log", tmp_path / "llm-b.log"]
    workers = []
    with OpenAITestServer(latency=0.15) as server:  # no server-side limit: it only records the peak
        server.chat_rule = categorize_rule()
        point_local_endpoint_at(server, max_parallel=SLOTS)
        try:
            for log in logs:
                workers.append(start_worker(env, log, name=log.stem))  # each one stopped below, even if the next fails
            params = {"limit": TAGS_PER_JOB, "batch_size": TAGS_PER_JOB, "request_size": REQUEST_SIZE}
            jobs = [create_job("categorize", {**params, "skip": i * TAGS_PER_JOB}) for i in range(2)]
            # Gate: both jobs pick their tags before either saves a proposal, which would shift the second's skip.
            with every_slot_held(server.url, SLOTS):
                for job in jobs:
                    categorize_tags_task.delay(job.pk)
                wait_for(lambda: Job.objects.filter(pk__in=[j.pk for j in jobs], total=TAGS_PER_JOB).count() == 2)
                assert not server.chat_requests()  # this process's locks held both workers back
            finished = [j.pk for j in jobs]
            wait_for(lambda: Job.objects.filter(pk__in=finished, finished_at__isnull=False).count() == 2)
        finally:
            with ThreadPoolExecutor() as pool:  # side by side: each warm shutdown takes seconds
                list(pool.map(stop_worker, workers))
            app.control.add_consumer("llm", destination=session_worker, reply=True)
    for job in jobs:
        job.refresh_from_db()
        assert job.status == "succeeded" and "success rate 100.0%" in job.message, job.message
        assert CategoryProposal.objects.filter(job=job, status="pending").count() == TAGS_PER_JOB
    ran = [re.findall(r"categorize_tags_task\[[\w-]+\] succeeded", log.read_text()) for log in logs]
    assert [len(tasks) for tasks in ran] == [1, 1], "each worker ran one of the jobs"
    schemas = [body["response_format"]["json_schema"]["schema"] for body in server.chat_requests()]
    asked = Counter(name for schema in schemas for name in schema["properties"])  # the keyed shape's tags
    assert asked == Counter(names)  # every tag asked exactly once, by one job
    assert server.max_in_flight == SLOTS
