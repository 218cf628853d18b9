import os
import shutil

import pytest

from tagsite.models import Image, ImageTag, Job
from tagsite.services.ingest import import_folder
from tests.factories import make_jpeg, write_keywords

pytestmark = pytest.mark.django_db


def test_rescan_handles_new_changed_moved_and_deleted_files(image_folder):
    assert import_folder(image_folder)["new"] == 3
    first = {row.path: row for row in Image.objects.all()}

    assert import_folder(image_folder) == {"unchanged": 3, "missing": 0}  # no hashing, no decoding

    moved = image_folder / "sub" / "moved.jpg"
    moved.parent.mkdir()
    shutil.move(image_folder / "photo0.jpg", moved)
    make_jpeg(image_folder / "photo1.jpg", color=(1, 1, 1))  # new content under the same name
    os.utime(image_folder / "photo1.jpg", (1, 1))
    (image_folder / "photo2.jpg").unlink()
    make_jpeg(image_folder / "photo3.jpg", color=(99, 0, 99))

    counts = import_folder(image_folder)
    assert counts == {"unchanged": 0, "moved": 1, "changed": 1, "new": 1, "missing": 1}
    old_photo0 = first[str(image_folder / "photo0.jpg")]
    assert Image.objects.get(pk=old_photo0.pk).path == str(moved)  # same record, new path
    assert (
        Image.objects.get(path=str(image_folder / "photo1.jpg")).sha256
        != first[str(image_folder / "photo1.jpg")].sha256
    )
    assert Image.objects.get(path=str(image_folder / "photo2.jpg")).status == "missing"


def test_same_content_twice_is_recorded_as_a_duplicate(image_folder):
    shutil.copy(image_folder / "photo0.jpg", image_folder / "copy.jpg")
    counts = import_folder(image_folder)
    assert counts["new"] == 3 and counts["duplicate"] == 1
    twins = Image.objects.filter(path__in=[str(image_folder / "copy.jpg"), str(image_folder / "photo0.jpg")])
    assert sorted(twins.values_list("status", flat=True)) == ["duplicate", "ok"]
    assert "same content" in twins.get(status="duplicate").error


def test_keywords_in_files_become_tags(image_folder):
    write_keywords(image_folder / "photo0.jpg", subject=["Blue Eyes", "sunset"], iptc=["blue_eyes", "Küste"])
    import_folder(image_folder)
    image = Image.objects.get(path=str(image_folder / "photo0.jpg"))
    assert sorted(image.tags.values_list("name", flat=True)) == ["blue_eyes", "küste", "sunset"]
    assert set(ImageTag.objects.filter(image=image).values_list("source", flat=True)) == {"file"}


def test_extensions_are_configurable(image_folder):
    (image_folder / "photo0.jpg").rename(image_folder / "photo0.jpeg")
    assert import_folder(image_folder, extensions=[".jpeg"])["new"] == 1


def test_thumbnails_are_made_once(image_folder, settings):
    import_folder(image_folder)
    image = Image.objects.first()
    thumb = settings.MEDIA_ROOT / image.thumbnail
    made = thumb.stat().st_mtime_ns
    Image.objects.all().delete()
    import_folder(image_folder)
    assert thumb.stat().st_mtime_ns == made


def test_import_command_records_a_job(image_folder, capsys):
    from django.core.management import call_command

    call_command("import_images", str(image_folder))
    job = Job.objects.get(kind="import_images")
    assert job.status == "succeeded" and job.current == job.total == 3
    assert "3 new" in capsys.readouterr().out


def test_a_redelivered_import_reruns_a_job_a_killed_worker_left_running(image_folder):
    from tagsite.tasks import import_folder_task

    job = Job.objects.create(kind="import_images", status="running", current=2, params={"path": str(image_folder)})
    import_folder_task(job.pk)
    job.refresh_from_db()
    assert job.status == "succeeded" and job.current == 3 and job.counts["new"] == 3

    finished = Job.objects.create(kind="import_images", status="succeeded", params={"path": str(image_folder)})
    import_folder_task(finished.pk)
    assert Job.objects.get(pk=finished.pk).finished_at is None  # skipped: it already ran


def test_interrupted_jobs_are_failed_when_serve_starts_again():
    from tagsite.services.jobs import fail_interrupted_jobs

    running = Job.objects.create(kind="import_images", status="running")
    queued = Job.objects.create(kind="import_images", status="queued")
    assert fail_interrupted_jobs() == 1
    running.refresh_from_db()
    assert running.status == "failed" and "interrupted" in running.message
    assert Job.objects.get(pk=queued.pk).status == "queued"
