"""Suggestions through a real Celery worker on Redis: upload to approval in Chromium, and a SIGKILL mid-batch."""

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from suggestions import services
from suggestions.models import ImageRun, TagSuggestion
from suggestions.tasks import queue_auto_tagging
from tagsite.celery import app
from tagsite.models import ImageTag, Job
from tagsite.services.ingest import ingest_paths
from tests.browser import screenshot
from tests.conftest import database_url, start_worker, stop_worker, wait_for
from tests.suggestions.wd14 import build_model

RED_SET = {"long_hair", "blush", "short_hair", "simple_background", "hatsune_miku"}


@pytest.mark.worker
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_upload_worker_suggests_and_a_moderator_reviews_in_the_browser(
    celery_worker, staff_page, live_server, wd14, tmp_path
):
    picture = tmp_path / "red square.png"
    PILImage.new("RGB", (300, 300), (255, 0, 0)).save(picture)
    page = staff_page
    page.click("text=Upload")
    page.set_input_files("#file-input", str(picture))
    page.locator("#upload-results li", has_text="added").wait_for()
    image_id = wait_for(lambda: ImageRun.objects.filter(model_version=wd14).values_list("image_id", flat=True).first())
    assert set(TagSuggestion.objects.filter(image_id=image_id).values_list("tag__name", flat=True)) == RED_SET

    page.click("text=Review")  # the hub: pending work per kind
    page.click("a:has-text('Tag suggestions')")
    card = page.locator(f".review-card[data-image='{image_id}']")
    card.locator(".suggestion", has_text="long hair").locator("button.approve").click()
    card.locator(".suggestion.approved", has_text="long hair").wait_for()
    card.locator(".suggestion", has_text="hatsune miku").locator("button.reject").click()
    card.locator(".suggestion.rejected", has_text="hatsune miku").wait_for()
    short_hair = card.locator(".suggestion", has_text="short hair")
    page.keyboard.press(short_hair.locator("kbd.key").text_content())  # the key number shown beside the tag
    card.locator(".suggestion.approved", has_text="short hair").wait_for()
    screenshot(page, "review")

    link = ImageTag.objects.get(image_id=image_id, tag__name="long_hair")
    assert (link.source, link.model_name, link.added_by.username) == ("model", "wd-test v1", "moderator")
    assert TagSuggestion.objects.get(image_id=image_id, tag__name="hatsune_miku").status == "rejected"
    assert TagSuggestion.objects.filter(image_id=image_id, status="approved").count() == 2

    v2 = services.install_model("wd-test", build_model(tmp_path / "v2"), version="v2")
    queue_auto_tagging([image_id], [v2])
    wait_for(lambda: ImageRun.objects.filter(model_version=v2, image_id=image_id).exists())
    again = set(TagSuggestion.objects.filter(image_id=image_id, model_version=v2).values_list("tag__name", flat=True))
    assert "hatsune_miku" not in again and "long_hair" not in again  # rejected, or already on the image
    assert again  # while the tags still undecided are suggested by the new version


@pytest.mark.worker
@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_backlog_tagged_from_the_review_page_by_the_worker(
    celery_worker, staff_page, live_server, wd14, tmp_path, settings
):
    settings.SUGGESTIONS_ON_INGEST = False  # imported untagged: the backlog
    folder = tmp_path / "backlog"
    folder.mkdir()
    for index in range(3):
        PILImage.new("RGB", (200 + index, 200), (255, 0, 0)).save(folder / f"{index}.png")
    ids = [image.pk for image in ingest_paths(sorted(map(str, folder.iterdir())))]
    assert not ImageRun.objects.exists()

    page = staff_page
    page.goto(f"{live_server.url}/suggestions/")
    page.select_option("#backlog select", str(wd14.pk))
    page.fill("#backlog input[name=limit]", "2")
    page.click("#backlog button")
    page.locator("#backlog .status.succeeded").wait_for(timeout=60_000)
    assert page.locator("#backlog .numbers").text_content() == "2/2"
    screenshot(page, "review-backlog")

    job = Job.objects.get(kind="suggest_tags")
    assert (job.status, job.total, job.current, job.params["model_id"]) == ("succeeded", 2, 2, wd14.pk)
    assert job.counts == {"images": 2, "suggestions": 10, "held": 0, "failed": 0}
    assert sorted(ImageRun.objects.values_list("image_id", flat=True)) == ids[:2]
    for image_id in ids[:2]:
        assert set(TagSuggestion.objects.filter(image_id=image_id).values_list("tag__name", flat=True)) == RED_SET
    assert page.evaluate("document.querySelectorAll('.review-card').length") == 0  # no full reload happened


def kill_tree(process) -> None:
    """SIGKILL a worker and its pool children, by their ids, with no chance to clean up."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    for pid in children:
        os.kill(int(pid), signal.SIGKILL)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.mark.worker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_worker_killed_mid_batch_loses_and_duplicates_nothing(celery_worker, wd14, tmp_path, settings):
    settings.SUGGESTIONS_ON_INGEST = False  # the task below is the only one
    folder = tmp_path / "big"
    folder.mkdir()
    pixels = np.zeros((1600, 1600, 3), dtype=np.uint8)
    pixels[..., 0] = 255
    paths = []
    for index in range(30):
        pixels[800, : index + 1] = 254  # a different file each, the same suggestions
        PILImage.fromarray(pixels).save(folder / f"{index}.png", compress_level=1)
        paths.append(str(folder / f"{index}.png"))
    ids = [image.pk for image in ingest_paths(paths)]
    session_worker = [f"test-{os.getpid()}@{os.uname().nodename}"]
    app.control.cancel_consumer("gpu", destination=session_worker, reply=True)
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "CELERY_VISIBILITY_TIMEOUT": "2",
        "TAGSITE_SUGGESTIONS_BATCH_SIZE": "2",
        "TAGSITE_SUGGESTIONS_DECODE_THREADS": "1",
    }
    worker = start_worker(env, tmp_path / "killed.log", name="killed")
    try:
        (job,) = queue_auto_tagging(ids, [wd14])
        done_at_kill = wait_for(lambda: ImageRun.objects.count() or None, timeout=60, interval=0.01)
        kill_tree(worker)
        assert 0 < done_at_kill < len(ids) and ImageRun.objects.count() < len(ids), "not killed mid-batch"
        time.sleep(2.5)  # past the visibility timeout: the unacknowledged task is handed out again
        worker = start_worker(env, tmp_path / "restarted.log", name="restarted")
        wait_for(lambda: ImageRun.objects.count() == len(ids), timeout=90)
        time.sleep(0.5)  # a duplicate delivery would show up now
        job = wait_for(lambda: Job.objects.filter(pk=job.pk, status="succeeded").first(), timeout=30)
        assert (job.kind, job.current, job.total) == ("auto_tag", len(ids), len(ids))  # the redelivery counted once
    finally:
        stop_worker(worker)
        app.control.add_consumer("gpu", destination=session_worker, reply=True)
    for image_id in ids:
        runs = ImageRun.objects.filter(image_id=image_id)
        names = list(TagSuggestion.objects.filter(image_id=image_id).values_list("tag__name", flat=True))
        assert runs.count() == 1 and sorted(names) == sorted(RED_SET), image_id
