"""Metadata write-back as a command, as a job on the `io` queue of a real worker, and under faults."""

import hashlib
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from django.core.management import call_command
from PIL import Image as PILImage

from tagsite import features, metadata
from tagsite.models import Image, Job
from tagsite.services.ingest import import_folder
from tagsite.services.jobs import create_job, request_cancel, run_job, start_job
from tagsite.services.tags import add_tags
from tagsite.services.writeback import TEMPORARY_MARK, WriteOptions, audit_folder, write_images
from tagsite.tasks import write_metadata_task
from tests.conftest import ROOT, database_url, wait_for
from tests.factories import make_jpeg, write_keywords


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def library(folder, count: int, size=(64, 48)) -> list[Image]:
    folder.mkdir(exist_ok=True)
    for index in range(count):
        make_jpeg(folder / f"p{index:03}.jpg", size=size, color=(index % 256, 90, 140))
    import_folder(folder)
    images = list(Image.objects.filter(path__startswith=str(folder)).order_by("path"))
    for image in images:
        add_tags([image], ["written tag", f"only {image.filename}"])
    return images


def keywords(path) -> list[str]:
    return metadata.read_fields([str(path)])[str(path)].get(metadata.SUBJECT, [])


def assert_old_or_new(images: list[Image], old: dict[int, str]) -> dict[str, int]:
    """Each file is the old version (same bytes) or the whole new one (decodes fully, carries all its keywords)."""
    seen = {"old": 0, "new": 0}
    for image in images:
        assert os.path.exists(image.path), f"{image.path} is missing"
        with PILImage.open(image.path) as picture:
            picture.load()  # bit-valid: the whole image decodes
        if sha256(image.path) == old[image.pk]:
            seen["old"] += 1
        else:
            assert keywords(image.path) == [f"only {image.filename}", "written tag"]
            seen["new"] += 1
    return seen


@pytest.mark.django_db
def test_the_command_writes_a_folder_and_a_dry_run_prints_the_diff(tmp_path, settings, capsys):
    settings.METADATA_DIR = tmp_path / "metadata"
    images = library(tmp_path / "pictures", 3)
    before = sha256(images[0].path)
    call_command("write_metadata", "--folder", str(tmp_path / "pictures"), "--dry-run")
    out = capsys.readouterr().out
    assert ": 3 dry-run" in out and f"{images[0].path} [dry-run]" in out
    assert "  XMP-dc:Subject: [] -> ['only p000.jpg', 'written tag']" in out
    assert sha256(images[0].path) == before

    call_command("write_metadata", "--all-dirty", "--append")
    job = Job.objects.filter(kind="write_metadata").first()
    assert (job.status, job.counts) == ("succeeded", {"written": 3})
    assert keywords(images[2].path) == ["only p002.jpg", "written tag"]
    assert "3 written" in (audit_folder(job.pk) / "summary.md").read_text()
    call_command("write_metadata", "--all-dirty")  # nothing is dirty any more
    assert Job.objects.filter(kind="write_metadata").first().total == 0


def test_the_write_task_goes_to_the_io_queue():
    assert features.route_task("tagsite.tasks.write_metadata_task", (), {}, {}) == {"queue": "io"}


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_write_job_runs_on_the_worker_and_its_audit_downloads_from_its_page(celery_worker, tmp_path, admin_client):
    images = library(tmp_path / "pictures", 4)
    missing = images[3]
    os.unlink(missing.path)
    params = {"selection": {"ids": [image.pk for image in images]}, "options": {"mode": "append"}}
    job = start_job("write_metadata", write_metadata_task, params)
    job = wait_for(lambda: Job.objects.filter(pk=job.pk, status__in=["partial", "failed"]).first(), timeout=60)
    assert job.counts == {"written": 3, "failed": 1} and job.status == "partial"
    assert job.errors == [{"item": missing.path, "error": "the file is missing (moved or deleted since import)"}]
    page = admin_client.get(f"/jobs/{job.pk}/").content.decode()
    assert f'href="/jobs/{job.pk}/audit/audit.jsonl"' in page and f'href="/jobs/{job.pk}/audit/summary.md"' in page
    download = admin_client.get(f"/jobs/{job.pk}/audit/audit.jsonl")
    lines = b"".join(download.streaming_content).decode().splitlines()
    assert len(lines) == 4 and sum('"status": "failed"' in line for line in lines) == 1
    assert download["Content-Disposition"].startswith("attachment")
    assert admin_client.get(f"/jobs/{job.pk}/audit/secret_key").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_sigkill_mid_batch_leaves_every_file_old_or_new_and_none_missing(tmp_path, settings):
    settings.METADATA_DIR = tmp_path / "metadata"
    images = library(tmp_path / "pictures", 40, size=(1200, 800))
    old = {image.pk: image.sha256 for image in images}
    env = {**os.environ, "DATABASE_URL": database_url(), "TAGSITE_METADATA_BATCH_SIZE": "4"}
    env["TAGSITE_METADATA_DIR"] = str(tmp_path / "metadata")
    writer = subprocess.Popen(
        [sys.executable, "manage.py", "write_metadata", "--folder", str(tmp_path / "pictures"), "--verbosity", "0"],
        cwd=ROOT,
        env=env,
    )
    wait_for(lambda: any(sha256(image.path) != old[image.pk] for image in images), timeout=60, interval=0.02)
    for child in psutil.Process(writer.pid).children(recursive=True):
        child.kill()
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    seen = assert_old_or_new(images, old)
    assert seen["new"] >= 1 and seen["old"] >= 1, seen  # killed mid-batch, not before or after
    for image in Image.objects.filter(pk__in=old):  # the record matches the file it names
        if sha256(image.path) != old[image.pk]:
            assert image.sha256 in (old[image.pk], sha256(image.path))

    folder = tmp_path / "pictures"
    leftovers = [name for name in os.listdir(folder) if TEMPORARY_MARK in name]
    for name in leftovers:  # the killed run's temporary copies, an hour later
        os.utime(folder / name, (time.time() - 7200, time.time() - 7200))
    counts = write_images([image.pk for image in images], WriteOptions())  # the next run finishes the job
    assert not [name for name in os.listdir(folder) if TEMPORARY_MARK in name]
    # A kill between the rename and the commit leaves one new file under its old record: refused, still new.
    assert counts.get("written", 0) + counts.get("unchanged", 0) >= 39 and sum(counts.values()) == 40, counts
    assert assert_old_or_new(images, old) == {"old": 0, "new": 40}


@pytest.mark.django_db
def test_exiftool_killed_mid_batch_fails_only_its_files_and_the_run_goes_on(tmp_path, settings):
    settings.METADATA_DIR = tmp_path / "metadata"
    settings.METADATA_WRITE_THREADS, settings.METADATA_BATCH_SIZE = 1, 3
    images = library(tmp_path / "pictures", 9)
    old = {image.pk: image.sha256 for image in images}
    killed = []

    def kill_exiftool(result):
        if not killed:
            for process in psutil.Process().children(recursive=True):
                if "exiftool" in " ".join(process.cmdline()):
                    process.kill()
                    killed.append(process.pid)

    counts = write_images([image.pk for image in images], WriteOptions(), on_result=kill_exiftool)
    assert killed and counts.get("written", 0) >= 6  # the next batches start a fresh ExifTool
    assert sum(counts.values()) == 9
    assert_old_or_new(images, old)


@pytest.mark.django_db
def test_exiftool_missing_is_a_clear_error_per_file(tmp_path, settings, monkeypatch):
    settings.METADATA_DIR = tmp_path / "metadata"
    images = library(tmp_path / "pictures", 2)
    monkeypatch.setenv("EXIFTOOL_PATH", str(tmp_path / "no-exiftool-here"))
    metadata.stop()
    seen = []
    try:
        assert write_images([image.pk for image in images], WriteOptions(), on_result=seen.append) == {"failed": 2}
    finally:
        monkeypatch.delenv("EXIFTOOL_PATH")
        metadata.stop()
    assert all(result.error.startswith("ExifTool failed, the file was not touched") for result in seen)
    assert [sha256(image.path) for image in images] == [image.sha256 for image in images]


@pytest.mark.django_db
def test_a_cancelled_write_job_stops_at_its_next_file_and_leaves_no_temporary_copy(tmp_path, settings, admin_user):
    settings.METADATA_DIR = tmp_path / "metadata"
    settings.METADATA_WRITE_THREADS, settings.METADATA_BATCH_SIZE = 2, 2
    images = library(tmp_path / "pictures", 12)
    job = create_job("write_metadata", {})
    with run_job(job) as progress:
        progress.interval = 0  # every step reads the cancel flag
        cancel = lambda result: progress.job.current == 2 and request_cancel(job, admin_user)  # noqa: E731
        write_images([image.pk for image in images], WriteOptions(), progress, on_result=cancel)
    job.refresh_from_db()
    assert (job.status, job.current) == ("cancelled", 3)
    assert not [name for name in os.listdir(tmp_path / "pictures") if TEMPORARY_MARK in name]
    assert assert_old_or_new(images, {image.pk: image.sha256 for image in images}) == {"old": 9, "new": 3}


@pytest.mark.django_db
def test_image_tagger_imports_tags_approves_by_its_rule_and_writes(tmp_path, settings, capsys):
    from suggestions.services import install_model
    from tagsite.models import Decision
    from tests.suggestions.wd14 import CONSTANT_TAGS, build_model

    settings.METADATA_DIR = tmp_path / "metadata"
    settings.SUGGESTIONS_MODELS_DIR = tmp_path / "models"
    settings.SUGGESTIONS_ON_INGEST = False
    install_model("wd-test", build_model(tmp_path / "wd14-src"), version="v1")
    folder = tmp_path / "shots"
    folder.mkdir()
    make_jpeg(folder / "a.jpg", size=(200, 150))
    write_keywords(folder / "a.jpg", subject=["Already There"], iptc=["Already There"])
    call_command("image_tagger", str(folder), "--append-tags", "--min-confidence", "0.5")
    assert "1 images, 1 tagged" in capsys.readouterr().out
    image = Image.objects.get(path=str(folder / "a.jpg"))
    confident = [name for name, score in CONSTANT_TAGS.items() if score >= 0.5]
    written = keywords(image.path)
    assert written[0] == "Already There" and {name.replace("_", " ") for name in confident} <= set(written)
    decisions = Decision.objects.filter(kind="tagsuggestion", rule__name="image_tagger")
    assert decisions.exists() and set(decisions.values_list("status", flat=True)) == {"auto_approved"}
    assert not image.suggestions.filter(status="auto_approved", confidence__lt=0.5).exists()


@pytest.mark.django_db
def test_auto_write_after_approval_is_off_by_default_and_logged_with_its_rule_when_on(
    tmp_path, settings, django_capture_on_commit_callbacks, caplog
):
    from suggestions.models import TagSuggestion
    from suggestions.services import install_model, suggest_tags
    from tagsite.models import AutoApproveRule
    from tagsite.review import services as review
    from tagsite.services.writeback import run_write_job
    from tests.suggestions.wd14 import build_model

    settings.METADATA_DIR = tmp_path / "metadata"
    settings.SUGGESTIONS_MODELS_DIR = tmp_path / "models"
    images = library(tmp_path / "pictures", 2)
    model = install_model("wd-test", build_model(tmp_path / "wd14-src"), version="v1")
    suggest_tags(model, images)
    rule = AutoApproveRule.objects.create(name="sure things", kind="tagsuggestion", min_confidence=0.5, active=False)
    first, second = (TagSuggestion.objects.filter(image=image).order_by("-confidence").first() for image in images)

    with django_capture_on_commit_callbacks(execute=True):
        review.decide(kind="tagsuggestion", ids=[first.pk], status="auto_approved", via="rule", rule=rule)
    assert not Job.objects.filter(kind="write_metadata").exists()  # off by default

    settings.METADATA_AUTO_WRITE = True
    with caplog.at_level("INFO", logger="tagsite.services.writeback"):
        with django_capture_on_commit_callbacks() as committed:
            review.decide(kind="tagsuggestion", ids=[second.pk], status="auto_approved", via="rule", rule=rule)
        assert not Job.objects.filter(kind="write_metadata").exists()  # only once the decision is committed
        for callback in committed:
            callback()
    job = Job.objects.get(kind="write_metadata")
    reason = "auto-write (TAGSITE_METADATA_AUTO_WRITE) after 1 tagsuggestion auto_approved by rule 'sure things'"
    assert job.params["reason"] == reason and job.params["selection"]["ids"] == [second.image_id]
    assert job.params["options"]["mode"] == "append" and reason in caplog.text
    with run_job(job) as progress:
        run_write_job(job, progress)
    assert second.tag.display_name.replace("_", " ") in keywords(images[1].path)
