"""Every kind of bad input is imported in one batch: each gets a clear, recorded outcome, the batch goes on,
and no file is modified."""

import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from tagsite.models import Image, ImageStage
from tagsite.services.ingest import import_folder
from tests.factories import make_jpeg

pytestmark = pytest.mark.django_db


def png_claiming(path: Path, width: int, height: int) -> None:
    """A tiny PNG whose header claims a huge canvas: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 64)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def write_cases(folder: Path) -> dict[str, tuple[str, str]]:
    """Make every case; returns file name -> (expected status, words the error must contain)."""
    (folder / "empty.jpg").write_bytes(b"")
    make_jpeg(folder / "whole.jpg", size=(320, 240))
    data = (folder / "whole.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (folder / "whole.jpg").unlink()
    (folder / "notes.jpg").write_text("this is a text file, not a JPEG\n")
    png_claiming(folder / "bomb.png", 50000, 50000)
    PILImage.new("CMYK", (40, 30), (0, 255, 255, 0)).save(folder / "cmyk.jpg", "JPEG")
    PILImage.fromarray(np.linspace(0, 65535, 40 * 30, dtype=np.uint16).reshape(30, 40)).save(folder / "deep16.png")
    frames = [PILImage.new("RGB", (32, 32), color) for color in ("red", "green", "blue")]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    PILImage.new("RGBA", (40, 30), (255, 0, 0, 128)).save(folder / "alpha.png")
    make_jpeg(folder / "rotated.jpg", size=(60, 40), orientation=6)
    make_jpeg(folder / "with spaces and ünïcödé 画像.jpg", color=(10, 200, 90))
    make_jpeg(folder / "new\nline.jpg", color=(90, 10, 200))
    make_jpeg(folder / "locked.jpg", color=(1, 2, 3))
    os.chmod(folder / "locked.jpg", 0)
    (folder / "dangling.jpg").symlink_to(folder / "does-not-exist.jpg")
    (folder / "loop_a.jpg").symlink_to(folder / "loop_b.jpg")
    (folder / "loop_b.jpg").symlink_to(folder / "loop_a.jpg")
    (folder / "sub").mkdir()
    make_jpeg(folder / "sub" / "inside.jpg", color=(250, 250, 5))
    (folder / "sub" / "back_to_top").symlink_to(folder, target_is_directory=True)
    os.mkfifo(folder / "pipe.jpg")
    unreadable = ("ok", "") if os.geteuid() == 0 else ("failed", "permission denied")
    return {
        "empty.jpg": ("failed", "empty file"),
        "truncated.jpg": ("failed", "truncated"),
        "notes.jpg": ("failed", "not an image"),
        "bomb.png": ("failed", "decompression bomb"),
        "cmyk.jpg": ("ok", ""),
        "deep16.png": ("ok", ""),
        "animated.gif": ("ok", ""),
        "alpha.png": ("ok", ""),
        "rotated.jpg": ("ok", ""),
        "with spaces and ünïcödé 画像.jpg": ("ok", ""),
        "new\nline.jpg": ("ok", ""),
        "locked.jpg": unreadable,  # root reads a mode-000 file; the pipe and links below stay unreadable
        "pipe.jpg": ("failed", "not a regular file"),
        "dangling.jpg": ("failed", "broken symlink"),
        "loop_a.jpg": ("failed", "symlink loop"),
        "loop_b.jpg": ("failed", "symlink loop"),
        "sub/inside.jpg": ("ok", ""),
    }


def fingerprints(folder: Path) -> dict[str, tuple[str, float]]:
    """Content hash and mtime of every regular file, to prove nothing was modified."""
    found = {}
    for path in folder.rglob("*"):
        if path.is_symlink() or not path.is_file() or path.is_fifo():
            continue
        found[str(path)] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime)
    return found


@pytest.fixture(scope="module")
def imported(django_db_setup, django_db_blocker, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad") / "input"
    folder.mkdir()
    expected = write_cases(folder)
    before = fingerprints(folder)
    with django_db_blocker.unblock():
        counts = import_folder(folder)
        rows = {str(Path(row.path).relative_to(folder)): row for row in Image.objects.filter(path__startswith=folder)}
        stages = {row.image.path: row for row in ImageStage.objects.filter(stage="ingest").select_related("image")}
    yield folder, expected, before, counts, rows, stages
    with django_db_blocker.unblock():
        Image.objects.all().delete()


CASES = [
    "empty.jpg", "truncated.jpg", "notes.jpg", "bomb.png", "cmyk.jpg", "deep16.png", "animated.gif", "alpha.png",
    "rotated.jpg", "with spaces and ünïcödé 画像.jpg", "new\nline.jpg", "locked.jpg", "pipe.jpg", "dangling.jpg",
    "loop_a.jpg", "sub/inside.jpg",
]  # fmt: skip


@pytest.mark.parametrize("name", CASES)
def test_each_file_gets_a_clear_recorded_outcome(imported, name):
    folder, expected, _, _, rows, stages = imported
    status, words = expected[name]
    row = rows[name]
    assert row.status == status, row.error
    assert words in row.error
    if status == "ok":
        assert row.thumbnail and row.width and row.height and len(row.sha256) == 64
        assert stages[row.path].status == "done"
    elif row.path in stages:
        assert stages[row.path].status == "failed" and stages[row.path].error == row.error


def test_no_file_is_modified(imported):
    folder, _, before, *_ = imported
    assert fingerprints(folder) == before


def test_the_batch_went_on_and_the_loop_was_not_followed(imported):
    _, _, _, counts, rows, _ = imported
    assert counts["new"] == 9
    assert not any("back_to_top" in name for name in rows)


def test_odd_images_are_decoded_correctly(imported):
    *_, rows, _ = imported
    assert (rows["rotated.jpg"].width, rows["rotated.jpg"].height) == (40, 60)  # orientation 6 turns it
    assert rows["rotated.jpg"].orientation == 6
    assert rows["animated.gif"].frames == 3
    assert rows["cmyk.jpg"].format == "JPEG"
    thumb = PILImage.open(Path(os.environ["TAGSITE_MEDIA_DIR"]) / rows["alpha.png"].thumbnail)
    red, green, blue = thumb.convert("RGB").getpixel((5, 5))
    assert red > 250 and 110 < green < 145  # half-transparent red over white, not over black
    deep = PILImage.open(Path(os.environ["TAGSITE_MEDIA_DIR"]) / rows["deep16.png"].thumbnail).convert("L")
    assert deep.getpixel((deep.width - 1, deep.height - 1)) > 200  # 16-bit scaled, not clipped to white or black


@pytest.mark.skipif(os.geteuid() != 0, reason="as a normal user the batch above already covers it")
def test_an_unreadable_file_is_reported_when_not_root():
    """Root reads a mode-000 file, so the permission error is checked in a child that drops to `nobody`."""
    import pickle
    import tempfile

    from tagsite.services.ingest import inspect_file

    folder = Path(tempfile.mkdtemp())
    folder.chmod(0o755)
    locked = make_jpeg(folder / "locked.jpg")
    locked.chmod(0)
    before = locked.read_bytes()
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        os.close(reader)
        os.setgid(65534)
        os.setuid(65534)
        with os.fdopen(writer, "wb") as out:
            pickle.dump(inspect_file(str(locked)), out)
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as answer:
        facts = pickle.load(answer)
    os.waitpid(child, 0)
    assert facts.error == "permission denied" and not facts.thumbnail
    assert locked.read_bytes() == before
