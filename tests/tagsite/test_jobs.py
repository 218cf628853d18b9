"""Jobs: one way to start them, one guard for redelivered tasks, an honest end (failed, partial, cancelled)
with sentences a person can act on, a page per job with a cancel button, and auto-tagging as a rolling job."""

import os
import re
import socket
import subprocess
import sys
import time
from importlib import import_module
from pathlib import Path

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models.signals import post_save
from PIL import Image as PILImage

from categorization.tasks import categorize_tags_task
from suggestions import services as suggestion_services
from suggestions.tasks import infer_backlog, queue_auto_tagging
from tagsite.ai.base import LLMUnavailable
from tagsite.models import Image, Job, LLMEndpoint, LLMRole, Tag
from tagsite.services.accounts import ensure_moderators_group
from tagsite.services.ingest import images_ingested, ingest_paths
from tagsite.services.jobs import (
    add_to_rolling_job,
    create_job,
    describe_error,
    request_cancel,
    run_job,
    run_job_share,
    start_job,
)
from tagsite.tasks import import_folder_task
from tests.browser import screenshot
from tests.conftest import ROOT, database_url, wait_for
from tests.factories import make_jpeg
from tests.llm_server import OpenAITestServer, categorize_rule
from tests.suggestions.wd14 import build_model


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def moderator(name: str = "mod") -> User:
    user = User.objects.create_user(name, password="a-long-password", is_staff=True)
    user.groups.add(ensure_moderators_group())
    return user


def make_categories() -> None:
    import_module("categorization.migrations.0002_categories").create_categories(apps, None)


def mixed_folder(tmp_path, good: int, bad: int):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for index in range(good):
        make_jpeg(folder / f"good{index}.jpg", color=(40 * index, 90, 160))
    for index in range(bad):
        (folder / f"broken{index}.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder


# The end of a job: succeeded, partial, failed, by its item counts


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("good", "bad", "status"), [(2, 0, "succeeded"), (2, 2, "partial"), (0, 2, "failed")], ids=["ok", "some", "all"]
)
def test_an_import_job_says_honestly_how_it_ended(tmp_path, good, bad, status):
    job = create_job("import_images", {"path": str(mixed_folder(tmp_path, good, bad)), "roots": None})
    import_folder_task(job.pk)
    job.refresh_from_db()
    assert job.status == status, job.message
    assert job.error_count == bad and [e["item"] for e in job.errors] == [
        str(tmp_path / "mixed" / f"broken{i}.jpg") for i in range(bad)
    ]
    assert all("Error" not in e["error"] and e["error"][0].islower() for e in job.errors)  # sentences, no class names
    assert bool(job.advice) == bool(bad) and ("import the folder again" in job.advice if bad else True)


def failed_llm_run(monkeypatch) -> Job:
    """A categorisation run against a loopback port nothing listens on: every request fails."""
    make_categories()
    Tag.objects.bulk_create([Tag(name=name, display_name=name, usage_count=3) for name in ("cat", "dog", "hat")])
    monkeypatch.setenv("TAGSITE_LLM_CATEGORIZE_URL", f"http://127.0.0.1:{closed_port()}/v1")
    monkeypatch.setenv("TAGSITE_LLM_CATEGORIZE_MODEL", "test-model")
    job = create_job("categorize", {"limit": 3, "batch_size": 3})
    categorize_tags_task(job.pk)
    job.refresh_from_db()
    return job


@pytest.mark.django_db
def test_an_llm_run_whose_every_request_failed_is_failed_with_what_to_do(monkeypatch):
    job = failed_llm_run(monkeypatch)
    assert job.status == "failed" and job.counts == {"successful": 0, "failed": 3}
    assert "llm_check categorize" in job.advice and "admin" in job.advice
    assert sorted(e["item"] for e in job.errors) == ["cat", "dog", "hat"]
    assert all(
        "cannot connect to http://127.0.0.1" in e["error"] and "LLMUnavailable" not in e["error"] for e in job.errors
    )


@pytest.mark.django_db
def test_the_categories_page_shows_a_failed_run_with_what_to_do_and_its_job_page(monkeypatch, admin_client):
    job = failed_llm_run(monkeypatch)
    html = admin_client.get(f"/tag_categorize?job={job.pk}").content.decode()
    assert f'href="/jobs/{job.pk}/"' in html and "run `manage.py llm_check categorize`" in html
    assert 'class="status failed"' in html


@pytest.mark.django_db
@pytest.mark.parametrize(("broken", "status"), [(1, "partial"), (2, "failed")])
@pytest.mark.parametrize("damage", ["garbage", "deleted"])
def test_a_backlog_run_with_undecodable_images_says_so(settings, tmp_path, broken, status, damage):
    settings.SUGGESTIONS_MODELS_DIR = tmp_path / "models"
    settings.SUGGESTIONS_ON_INGEST = False
    model = suggestion_services.install_model("wd-test", build_model(tmp_path / "wd14-src"), version="v1")
    paths = []
    for index in range(2):
        PILImage.new("RGB", (80 + index, 80), (0, 0, 255)).save(tmp_path / f"{index}.png")
        paths.append(str(tmp_path / f"{index}.png"))
    ingest_paths(paths)
    for path in paths[:broken]:  # damaged on disk, or gone, after the import
        if damage == "deleted":
            Path(path).unlink()
        else:
            Path(path).write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    job = create_job("suggest_tags", {"model_id": model.pk, "limit": None})
    infer_backlog(job.pk)
    job.refresh_from_db()
    assert (job.status, job.error_count, job.counts["failed"]) == (status, broken, broken)
    assert [error["item"] for error in job.errors] == paths[:broken]
    if damage == "deleted":
        assert all("no such file or directory" in e["error"].lower() and "Errno" not in e["error"] for e in job.errors)
    assert "backlog run" in job.advice


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("counts", "errors", "status"),
    [
        ({"images": 3, "failed": 0}, 0, "succeeded"),
        ({"images": 2, "failed": 1}, 1, "partial"),
        ({"images": 0, "suggestions": 0, "failed": 3}, 3, "failed"),
        ({"unchanged": 10}, 1, "partial"),  # a rescan whose only news is one unreadable file
        ({}, 1, "failed"),  # e.g. a folder that could not be listed at all
    ],
)
def test_the_outcome_rule_reads_the_item_counts(counts, errors, status):
    job = create_job("any")
    with run_job(job, advice="do this") as progress:
        for key, value in counts.items():
            progress.count(key, value)
        for index in range(errors):
            progress.error(f"item {index}", "it went wrong")
    job.refresh_from_db()
    assert (job.status, job.advice) == (status, "" if status == "succeeded" else "do this")


@pytest.mark.parametrize(
    ("exc", "sentence"),
    [
        (FileNotFoundError(2, "No such file or directory", "/gone"), "no such file or directory: /gone"),
        (PermissionError(13, "Permission denied", "/root/x"), "permission denied: /root/x"),
        (LLMUnavailable("local: cannot connect to http://127.0.0.1:1234/v1"), "local: cannot connect to"),
        (ValueError("limit must be positive"), "limit must be positive"),
        (KeyError("path"), "an unexpected error stopped it ('path'); the worker log has the details"),
        (ZeroDivisionError("division by zero"), "an unexpected error stopped it (division by zero)"),
    ],
)
def test_errors_are_sentences_not_exception_names(exc, sentence):
    text = describe_error(exc)
    assert text.startswith(sentence) and type(exc).__name__ not in text


@pytest.mark.django_db
def test_a_job_stopped_by_an_exception_is_failed_with_a_sentence():
    job = create_job("any")
    with pytest.raises(FileNotFoundError), run_job(job, advice="check the folder"):
        raise FileNotFoundError(2, "No such file or directory", "/nowhere")
    job.refresh_from_db()
    assert (job.status, job.message, job.advice) == (
        "failed",
        "no such file or directory: /nowhere",
        "check the folder",
    )


# One way to start, one guard for redelivered tasks


@pytest.mark.django_db
def test_start_job_queues_the_task_only_once_the_job_is_committed(django_capture_on_commit_callbacks, admin_user):
    with django_capture_on_commit_callbacks(execute=False) as callbacks, transaction.atomic():
        job = start_job("import_images", import_folder_task, {"path": "/tmp"}, admin_user)
        assert not callbacks  # nothing is sent while the row may still roll back
    assert len(callbacks) == 1 and (job.status, job.created_by) == ("queued", admin_user)


def every_job_task():
    """(task, kind, params) of every task that runs a Job."""
    return [
        (import_folder_task, "import_images", {"path": "/nonexistent"}),
        (categorize_tags_task, "categorize", {"limit": 1}),
        (infer_backlog, "suggest_tags", {"model_id": None, "limit": None}),
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("status", ["succeeded", "partial", "failed", "cancelled"])
@pytest.mark.parametrize(("task", "kind", "params"), every_job_task(), ids=lambda v: getattr(v, "name", ""))
def test_every_task_skips_a_job_that_has_ended(task, kind, params, status):
    job = create_job(kind, params)
    Job.objects.filter(pk=job.pk).update(status=status, message="done before")
    task(job.pk)
    job.refresh_from_db()
    assert (job.status, job.message, job.started_at) == (status, "done before", None)


@pytest.mark.django_db
def test_a_task_reruns_a_job_a_killed_worker_left_running(tmp_path):
    job = create_job("import_images", {"path": str(mixed_folder(tmp_path, 2, 0)), "roots": None})
    Job.objects.filter(pk=job.pk).update(status="running", current=1, total=2, error_count=5, counts={"new": 1})
    import_folder_task(job.pk)
    job.refresh_from_db()
    assert (job.status, job.current, job.total, job.error_count, job.counts["new"]) == ("succeeded", 2, 2, 0, 2)


# Cancelling


@pytest.mark.django_db
def test_a_queued_job_cancelled_never_starts(admin_user, tmp_path):
    job = create_job("import_images", {"path": str(mixed_folder(tmp_path, 1, 0)), "roots": None})
    assert request_cancel(job, admin_user)
    import_folder_task(job.pk)
    job.refresh_from_db()
    assert (job.status, job.message, job.current) == ("cancelled", "cancelled by admin before it started", 0)
    assert not request_cancel(job, admin_user)  # it has ended


@pytest.mark.django_db
def test_a_running_job_stops_at_its_next_item_once_cancelled(admin_user):
    job = create_job("any")
    done = 0
    with run_job(job) as progress:
        progress.set_total(100)
        for _ in range(100):
            if done == 10:
                request_cancel(Job.objects.get(pk=job.pk), admin_user)
                progress._last_save = 0  # the next write is due (they are throttled to twice a second)
            progress.advance(ok=1)
            done += 1
    job.refresh_from_db()
    assert done == 10 and (job.status, job.current) == ("cancelled", 11)
    assert job.message == "cancelled by admin after 11 of 100 items" and job.cancelled_by == admin_user


@pytest.mark.django_db
def test_a_cancelled_import_stops_between_chunks_and_announces_what_it_saved(tmp_path, admin_user):
    folder = tmp_path / "many"
    folder.mkdir()
    for index in range(40):  # three chunks of 16
        make_jpeg(folder / f"{index:02}.jpg", size=(24, 16), color=(index * 6, 80, 120))
    job = create_job("import_images", {"path": str(folder), "roots": None})
    announced = []

    def cancel_in_the_second_chunk(sender, instance, created, **kwargs):
        if created and Image.objects.count() == 20:
            request_cancel(Job.objects.get(pk=job.pk), admin_user)
            time.sleep(0.6)  # the next progress write is due: writes are throttled to twice a second

    post_save.connect(cancel_in_the_second_chunk, sender=Image, dispatch_uid="test-cancel")
    images_ingested.connect(lambda sender, image_ids, **kw: announced.extend(image_ids), weak=False, dispatch_uid="t")
    try:
        import_folder_task(job.pk)
    finally:
        post_save.disconnect(sender=Image, dispatch_uid="test-cancel")
        images_ingested.disconnect(dispatch_uid="t")
    job.refresh_from_db()
    assert (job.status, job.current, job.total) == ("cancelled", 32, 40)
    assert job.message == "cancelled by admin after 32 of 40 items"
    assert Image.objects.count() == 32 and sorted(announced) == sorted(Image.objects.values_list("pk", flat=True))


@pytest.mark.django_db
def test_cancel_through_the_api_needs_the_permission_and_a_job_that_has_not_ended(client, admin_user):
    job = create_job("import_images", {"path": "/tmp"})
    staff = User.objects.create_user("staff", password="a-long-password", is_staff=True)
    client.force_login(staff)
    assert client.post(f"/api/jobs/{job.pk}/cancel/").status_code == 403
    assert client.post(f"/jobs/{job.pk}/cancel/").status_code == 403
    client.force_login(moderator())
    response = client.post(f"/api/jobs/{job.pk}/cancel/")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert response.json()["cancelled_by"] == "mod" and response.json()["url"] == f"/jobs/{job.pk}/"
    assert client.post(f"/api/jobs/{job.pk}/cancel/").status_code == 409


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_cancelled_llm_run_on_a_real_worker_stops_and_sends_no_more_requests(celery_worker, client):
    make_categories()
    client.force_login(moderator())
    names = [f"tag{index}" for index in range(24)]
    Tag.objects.bulk_create([Tag(name=name, display_name=name, usage_count=30 - i) for i, name in enumerate(names)])
    with OpenAITestServer(latency=0.3) as server:
        server.chat_rule = categorize_rule()
        endpoint = LLMEndpoint.objects.create(name="slow", base_url=server.url, model="test-model", max_parallel=1)
        LLMRole.objects.update_or_create(role="categorize", defaults={"endpoint": endpoint, "model": ""})
        job = start_job("categorize", categorize_tags_task, {"limit": 24, "batch_size": 24, "request_size": 1})
        wait_for(lambda: Job.objects.get(pk=job.pk).current >= 2, timeout=30)
        assert client.post(f"/api/jobs/{job.pk}/cancel/").json()["cancel_requested_at"]
        job = wait_for(lambda: Job.objects.filter(pk=job.pk, status="cancelled").first(), timeout=10)
        sent = len(server.chat_requests())
        time.sleep(1)
        assert len(server.chat_requests()) == sent < 24  # no request after the stop
    assert 2 <= job.current < 24 and job.message == f"cancelled by mod after {job.current} of 24 items"


# Automatic tagging after an import or upload: one rolling job per model


@pytest.mark.django_db
def test_pieces_of_a_rolling_job_add_up_and_the_last_one_ends_it():
    first = add_to_rolling_job("auto_tag", "7", 3, {"model": "m"})
    assert add_to_rolling_job("auto_tag", "7", 2).pk == first.pk  # still open: the same job, 5 to do
    assert add_to_rolling_job("auto_tag", "8", 1).pk != first.pk  # another model, another job
    with run_job_share(first, 3) as progress:
        progress.advance()
        progress.count("images", 3)
    first.refresh_from_db()
    assert (first.status, first.current, first.total) == ("running", 3, 5)
    with pytest.raises(RuntimeError), run_job_share(first, 2) as progress:
        raise RuntimeError("model file vanished")
    first.refresh_from_db()
    assert (first.status, first.current, first.error_count, first.counts) == (
        "partial",
        5,
        1,
        {"images": 3, "failed": 2},
    )
    assert first.errors == [{"item": "2 of 2 items", "error": "an unexpected error stopped it (model file vanished); "
                             "the worker log has the details"}]  # fmt: skip
    assert add_to_rolling_job("auto_tag", "7", 1).pk != first.pk  # ended: new images open a new job


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_automatic_tagging_after_imports_shows_as_one_job_per_model(celery_worker, settings, tmp_path):
    settings.SUGGESTIONS_MODELS_DIR = tmp_path / "models"
    model = suggestion_services.install_model("wd-test", build_model(tmp_path / "wd14-src"), version="v1")
    folder = tmp_path / "pictures"
    folder.mkdir()
    for index in range(4):
        PILImage.new("RGB", (90 + index, 90), (255, 0, 0)).save(folder / f"{index}.png")
    with transaction.atomic():  # two uploads in a row: both join the model's open job
        ingest_paths([str(folder / "0.png"), str(folder / "1.png")])
        ingest_paths([str(folder / "2.png")])
    (job,) = Job.objects.filter(kind="auto_tag")
    assert (job.total, job.params["model_id"]) == (3, model.pk)
    job = wait_for(lambda: Job.objects.filter(pk=job.pk, status="succeeded").first(), timeout=60)
    assert (job.current, job.counts["images"], job.counts["failed"]) == (3, 3, 0)
    ingest_paths([str(folder / "3.png")])  # after the queue was complete: a new job
    later = wait_for(lambda: Job.objects.filter(kind="auto_tag", status="succeeded").exclude(pk=job.pk).first())
    assert (later.total, later.current) == (1, 1)


@pytest.mark.django_db
def test_a_cancelled_rolling_job_skips_its_queued_pieces(settings, tmp_path, admin_user):
    settings.SUGGESTIONS_MODELS_DIR = tmp_path / "models"
    model = suggestion_services.install_model("wd-test", build_model(tmp_path / "wd14-src"), version="v1")
    (job,) = queue_auto_tagging([1, 2], [model])
    request_cancel(job, admin_user)
    from suggestions.tasks import infer_tags

    infer_tags([1, 2], model.pk, job.pk)
    job.refresh_from_db()
    assert (job.status, job.current, job.message) == ("cancelled", 0, "cancelled by admin before it started")


# The pages


@pytest.mark.django_db
def test_the_job_page_shows_parameters_errors_timings_and_advice(admin_client, tmp_path):
    job = create_job("import_images", {"path": str(mixed_folder(tmp_path, 1, 1)), "roots": None})
    import_folder_task(job.pk)
    html = admin_client.get(f"/jobs/{job.pk}/").content.decode()
    for text in ("partial", str(tmp_path / "mixed"), "broken0.jpg", "What to do:", "Took", "Waited", "1 new"):
        assert text in html, text
    assert "Cancel this job" not in html  # it has ended
    assert f'href="/jobs/{job.pk}/"' in admin_client.get("/jobs/").content.decode()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_job_page_in_the_browser_shows_errors_and_cancels(staff_page, live_server, tmp_path):
    page = staff_page
    page.set_viewport_size({"width": 1400, "height": 900})
    ended = create_job("import_images", {"path": str(mixed_folder(tmp_path, 2, 3)), "roots": None})
    import_folder_task(ended.pk)
    page.goto(f"{live_server.url}/jobs/")
    page.click(f"tr[data-job='{ended.pk}'] a >> nth=0")
    page.wait_for_url(f"{live_server.url}/jobs/{ended.pk}/")
    assert page.locator(".status.badge.partial").text_content() == "partial"
    assert page.locator("#job-errors tbody tr").count() == 3
    assert "broken0.jpg" in page.locator("#job-errors").text_content()
    assert "import the folder again" in page.locator("#advice").text_content()
    screenshot(page, "job-detail-errors")

    queued = create_job("import_images", {"path": str(tmp_path)})
    page.goto(f"{live_server.url}/jobs/{queued.pk}/")
    assert page.locator(".status.badge.queued").text_content() == "queued"
    screenshot(page, "job-detail-queued")
    page.click("#cancel-job button")
    page.locator(".status.badge.cancelled").wait_for()
    assert page.locator(".notice.cancelled").text_content().strip() == "Cancelled by moderator before it started."
    assert page.locator("#cancel-job").count() == 0
    screenshot(page, "job-detail-cancelled")
    queued.refresh_from_db()
    assert queued.status == "cancelled"


# Console noise: a command's output holds only what is the user's to read


# An empty bar reads "import: 0item [00:00, ?item/s]"; a rate such as "93.00item/s" is no noise.
NOISE = [
    re.compile(pattern)
    for pattern in (
        r"No hostname was supplied",
        r"(?<![\d.])0item",
        r"HTTP Request:",
        r"superuser privileges",
        r"Traceback",
    )
]


@pytest.mark.django_db(transaction=True)
def test_commands_print_no_library_noise(tmp_path, settings):
    settings.SUGGESTIONS_MODELS_DIR = tmp_path / "models"
    make_categories()
    suggestion_services.install_model("wd-test", build_model(tmp_path / "wd14-src"), version="v1")  # queues tagging
    Tag.objects.bulk_create([Tag(name=name, display_name=name, usage_count=1) for name in ("cat", "dog")])
    env = {key: value for key, value in os.environ.items() if not key.startswith("CELERY_")}  # the filesystem broker
    env.update(
        DATABASE_URL=database_url(), TAGSITE_VAR_DIR=str(tmp_path / "var"), TAGSITE_MODELS_DIR=str(tmp_path / "models")
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    with OpenAITestServer() as server:
        server.chat_rule = categorize_rule()
        env.update(TAGSITE_LLM_CATEGORIZE_URL=server.url, TAGSITE_LLM_CATEGORIZE_MODEL="test-model")
        outputs = {
            " ".join(command): subprocess.run(
                [sys.executable, "manage.py", *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
            )
            for command in (
                ["import_images", str(empty)],
                ["import_images", str(mixed_folder(tmp_path, 2, 1))],
                ["llm_auto_categorize_tags", "--limit", "2"],
            )
        }
    for command, result in outputs.items():
        text = result.stdout + result.stderr
        assert result.returncode == 0, (command, text)
        assert not [noise for noise in NOISE if noise.search(text)], (command, text)
    assert "nothing to do" in outputs[f"import_images {empty}"].stdout
    assert "broken0.jpg" in outputs[f"import_images {tmp_path / 'mixed'}"].stdout


@pytest.mark.slow
@pytest.mark.django_db
@pytest.mark.skipif(os.geteuid() != 0, reason="Celery warns only when its worker runs as root")
def test_the_worker_started_as_root_prints_no_root_warning(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("CELERY_")}  # filesystem broker
    env.update(TAGSITE_VAR_DIR=str(tmp_path / "var"), DATABASE_URL=database_url())
    command = [sys.executable, "-m", "celery", "-A", "tagsite", "worker", "-Q", "default", "--loglevel", "INFO"]
    worker = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        wait_for(lambda: lines.append(worker.stdout.readline()) or "ready." in lines[-1] or worker.poll(), timeout=90)
    finally:
        worker.terminate()
        worker.wait(30)
    text = "".join(lines)
    assert "ready." in text and not [noise for noise in NOISE if noise.search(text)], text
