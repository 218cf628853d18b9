import os
import shutil
import subprocess

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


def test_a_redelivered_import_reruns_a_job_a_killed_worker_left_running(image_folder, settings):
    from tagsite.tasks import import_folder_task

    settings.IMPORT_ROOTS = [str(image_folder)]

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


def test_files_outside_the_chosen_extensions_are_left_alone(image_folder):
    """`--extensions jpg` on an imported folder imports JPEGs and leaves every other file as it was."""
    from PIL import Image as PILImage

    PILImage.new("RGB", (20, 10), "red").save(image_folder / "red.png")
    PILImage.new("RGB", (20, 10), "blue").save(image_folder / "blue.webp")
    assert import_folder(image_folder)["new"] == 5
    make_jpeg(image_folder / "photo3.jpg", color=(9, 9, 9))
    (image_folder / "photo2.jpg").unlink()

    assert import_folder(image_folder, extensions=[".jpg"]) == {"unchanged": 2, "new": 1, "missing": 1}
    statuses = dict(Image.objects.values_list("path", "status"))
    assert statuses[str(image_folder / "red.png")] == statuses[str(image_folder / "blue.webp")] == "ok"
    assert statuses[str(image_folder / "photo2.jpg")] == "missing"


def test_the_command_leaves_other_extensions_alone(image_folder):
    from django.core.management import call_command
    from PIL import Image as PILImage

    PILImage.new("RGB", (20, 10), "red").save(image_folder / "red.png")
    call_command("import_images", str(image_folder), verbosity=0)
    call_command("import_images", str(image_folder), extensions="jpg", verbosity=0)
    assert not Image.objects.filter(status="missing").exists()


def test_tagsites_own_folders_are_never_imported(image_folder, settings, tmp_path):
    """Thumbnails and uploads (media) and var are skipped inside an imported folder, even through a symlink."""
    from tagsite.services.ingest import ImportRefused

    settings.MEDIA_ROOT = image_folder / "media"
    settings.VAR_DIR = image_folder / "var"
    settings.IMPORT_DROP_DIR = settings.VAR_DIR / "import"
    settings.IMPORT_DROP_DIR.mkdir(parents=True)
    make_jpeg(settings.VAR_DIR / "stray.jpg", color=(5, 50, 5))
    make_jpeg(settings.IMPORT_DROP_DIR / "dropped.jpg", color=(5, 5, 50))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "media_link").symlink_to(settings.MEDIA_ROOT, target_is_directory=True)

    import_folder(image_folder)  # writes thumbnails into image_folder/media
    assert any(settings.MEDIA_ROOT.rglob("*.jpg"))
    counts = import_folder(image_folder)  # a rescan sees them now, and leaves them
    assert counts.get("new", 0) == 0
    paths = set(Image.objects.values_list("path", flat=True))
    assert not any("/media/" in path or "/var/" in path for path in paths)

    (image_folder / "link_to_media").symlink_to(settings.MEDIA_ROOT, target_is_directory=True)
    import_folder(image_folder)
    assert not Image.objects.filter(path__contains="link_to_media").exists()
    for own in (settings.MEDIA_ROOT, settings.VAR_DIR, outside / "media_link"):
        with pytest.raises(ImportRefused, match="own data folder"):
            import_folder(own)
    assert import_folder(settings.IMPORT_DROP_DIR)["new"] == 1  # the drop folder inside var is for importing


def test_symlinks_leading_outside_the_roots_are_not_followed(image_folder, tmp_path):
    outside = tmp_path / "private"
    outside.mkdir()
    make_jpeg(outside / "secret.jpg", color=(66, 6, 6))
    (image_folder / "escape").symlink_to(outside, target_is_directory=True)
    (image_folder / "secret_link.jpg").symlink_to(outside / "secret.jpg")
    (image_folder / "proc").symlink_to("/proc/self", target_is_directory=True)

    counts = import_folder(image_folder, roots=[str(image_folder)])
    assert counts["new"] == 3
    secret = Image.objects.get(path=str(image_folder / "secret_link.jpg"))
    assert secret.status == "failed" and "outside the import folders" in secret.error
    assert not Image.objects.filter(path__contains="/escape/").exists()
    assert not Image.objects.filter(path__contains="/proc/").exists()

    import_folder(image_folder)  # the command line (no roots) follows the folder link, never into /proc
    assert Image.objects.filter(path=str(image_folder / "escape" / "secret.jpg"), status="ok").exists()
    assert not Image.objects.filter(path__contains="/proc/").exists()


@pytest.mark.parametrize("path", ["/proc/self", "/proc", "/sys/kernel", "/dev"])
def test_system_folders_are_never_walked(path):
    from tagsite.services.ingest import ImportRefused

    with pytest.raises(ImportRefused, match="never imported"):
        import_folder(path)


def test_a_kernel_view_of_an_allowed_folder_is_refused_as_given(image_folder):
    """/proc/self/root<folder> resolves to an allowed folder, yet walking it would store /proc paths and, with
    another pid, enter that process's mount namespace: the path as given decides."""
    from tagsite.services.ingest import ImportRefused, check_import_folder

    through_proc = f"/proc/self/root{image_folder}"
    with pytest.raises(ImportRefused, match="never imported"):
        check_import_folder(through_proc, [str(image_folder)])
    with pytest.raises(ImportRefused, match="never imported"):
        import_folder(through_proc)
    assert not Image.objects.exists()


def test_an_import_job_stays_inside_its_roots(image_folder, tmp_path, settings):
    """The worker checks again: a job whose folder is outside the roots fails with the reason, imports nothing."""
    from tagsite.tasks import import_folder_task

    settings.IMPORT_ROOTS = [str(tmp_path / "somewhere-else")]
    from tagsite.services.ingest import ImportRefused

    job = Job.objects.create(kind="import_images", params={"path": str(image_folder), "roots": settings.IMPORT_ROOTS})
    with pytest.raises(ImportRefused):
        import_folder_task(job.pk)
    job.refresh_from_db()
    assert job.status == "failed" and "outside the import folders" in job.message
    assert not Image.objects.exists()


def test_folders_given_to_run_become_import_roots(tmp_path, settings):
    """`serve FOLDER` records the folder; the web server and worker it starts read it as an import root."""
    import subprocess
    import sys

    from tagsite.management.commands.serve import remember_run_folder

    var = tmp_path / "var"
    var.mkdir()
    settings.RUN_FOLDERS_FILE = var / "run_folders"
    for folder in ("/srv/pictures", "/srv/more", "/srv/pictures"):
        remember_run_folder(folder)
    env = {**os.environ, "TAGSITE_VAR_DIR": str(var), "DATABASE_URL": "postgresql://unused@127.0.0.1:1/none"}
    env.pop("TAGSITE_IMPORT_ROOTS", None)
    read = [sys.executable, "-c", "from django.conf import settings; print(settings.IMPORT_ROOTS)"]
    roots = subprocess.run(read, env=env, capture_output=True, text=True, check=True).stdout
    assert roots.strip() == str(["/srv/pictures", "/srv/more", str(var / "import")])
    env["TAGSITE_IMPORT_ROOTS"] = "/data/a, /data/b"
    roots = subprocess.run(read, env=env, capture_output=True, text=True, check=True).stdout
    assert roots.strip() == str(["/data/a", "/data/b"])


def test_a_rescan_reads_sidecars_edited_added_or_removed_since_import(image_folder):
    """A sidecar's size and mtime are part of what a rescan compares: keywords another program adds come in."""
    darktable, lightroom = image_folder / "photo0.jpg.xmp", image_folder / "photo1.xmp"

    def exiftool(*args: str) -> None:
        subprocess.run(["exiftool", "-q", *args], check=True)

    def names(index: int) -> list[str]:
        image = Image.objects.get(path=str(image_folder / f"photo{index}.jpg"))
        return sorted(image.tags.values_list("name", flat=True))

    exiftool("-XMP-dc:Subject=harbour", "-o", str(darktable))
    assert import_folder(image_folder)["new"] == 3
    assert import_folder(image_folder) == {"unchanged": 3, "missing": 0}  # the sidecar as it was read: no work

    exiftool("-overwrite_original", "-XMP-dc:Subject+=boats", str(darktable))  # edited by another program
    exiftool("-XMP-dc:Subject=dusk", "-o", str(lightroom))  # added after the import
    assert import_folder(image_folder) == {"unchanged": 1, "changed": 2, "missing": 0}
    assert (names(0), names(1), names(2)) == (["boats", "harbour"], ["dusk"], [])

    size = darktable.stat().st_size
    exiftool("-overwrite_original", "-XMP-dc:Subject=marinas", "-XMP-dc:Subject=ships", str(darktable))
    assert darktable.stat().st_size == size  # rewritten to the same size: only its mtime tells
    os.utime(darktable, (1, 1))
    assert import_folder(image_folder) == {"unchanged": 2, "changed": 1, "missing": 0}
    assert names(0) == ["boats", "harbour", "marinas", "ships"]

    lightroom.unlink()  # a removed sidecar is a change too, read once
    assert import_folder(image_folder) == {"unchanged": 2, "changed": 1, "missing": 0}
    assert import_folder(image_folder) == {"unchanged": 3, "missing": 0}
