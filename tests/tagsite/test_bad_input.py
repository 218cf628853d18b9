"""Every kind of bad or odd input is imported in one batch: each file gets a clear, recorded outcome naming it,
every good file in the batch is imported, the batch goes on, and no file is modified.

The bad files are real files written by Pillow or ExifTool, then cut, corrupted or lied about the way a
failing disk, an interrupted copy or a hostile upload would."""

import hashlib
import io
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from PIL import Image as PILImage

from tagsite.models import Image, ImageStage, Job, Tag
from tagsite.services import ingest
from tagsite.services.ingest import import_folder
from tests.factories import make_jpeg, write_keywords

pytestmark = pytest.mark.django_db

LIMIT = 180_000_000  # TAGSITE_MAX_IMAGE_PIXELS's default, which the tests run with


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge canvas: a decompression bomb."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")


def encoded(fmt: str, seed: int, size=(96, 64), **options) -> bytes:
    """A real image in `fmt`, noisy so that every file has its own content."""
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels, "RGB").save(buffer, fmt, **options)
    return buffer.getvalue()


def jpeg_with_segment(payload: bytes, seed: int, marker: int = 0xE1) -> bytes:
    """A JPEG with an extra APPn segment (EXIF, XMP) right after SOI."""
    data = encoded("JPEG", seed)
    return data[:2] + struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload + data[2:]


def random_bytes(count: int, seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, count, dtype=np.uint8).tobytes()


# An XMP packet with a "billion laughs" DTD: nine levels of twenty-fold entities.
ENTITY_BOMB = (
    b'<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaaaaaaaaaaaa">'
    + b"".join(b'<!ENTITY %c "%s">' % (98 + i, b"&%c;" % (97 + i) * 20) for i in range(8))
    + b']><x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:subject><rdf:Bag><rdf:li>&i;</rdf:li>'
    b'</rdf:Bag></dc:subject></rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
)

TRUNCATED = "truncated"
DAMAGED = "damaged or truncated"
NOT_AN_IMAGE = "not an image"
BOMB = f"decompression bomb: {{}} over the limit of {LIMIT} pixels (TAGSITE_MAX_IMAGE_PIXELS)"


def write_broken_files(folder: Path) -> dict[str, tuple[str, str]]:
    """Cut, corrupted and disguised files; returns file name -> (expected status, words the error must contain)."""
    cases: dict[str, tuple[str, str]] = {}

    def put(name: str, data: bytes, status: str, words: str = "") -> None:
        (folder / name).write_bytes(data)
        cases[name] = (status, words)

    jpeg = encoded("JPEG", 1, quality=90)
    scan = jpeg.index(b"\xff\xda")  # start of the entropy-coded data
    put("jpeg_cut_after_soi.jpg", jpeg[:2], "failed", NOT_AN_IMAGE)
    put("jpeg_cut_in_header.jpg", jpeg[: scan // 2], "failed", TRUNCATED)
    for percent in (10, 50, 90):
        put(f"jpeg_cut_scan_{percent}.jpg", jpeg[: scan + (len(jpeg) - scan) * percent // 100], "failed", TRUNCATED)
    put("jpeg_no_end_marker.jpg", jpeg[:-2], "failed", TRUNCATED)
    middle = scan + (len(jpeg) - scan) // 2
    put(
        "jpeg_garbage_in_middle.jpg", jpeg[:middle] + random_bytes(2000, 5) + jpeg[middle + 2000 :], "failed", "corrupt"
    )
    # an end marker in the scan: libjpeg stops there and fills the rest grey, as every viewer shows it
    put("jpeg_end_marker_in_middle.jpg", jpeg[:middle] + b"\xff\xd9" + jpeg[middle + 2 :], "ok")

    png = encoded("PNG", 2)
    idat = png.index(b"IDAT") - 4
    put("png_cut_in_signature.png", png[:8], "failed", DAMAGED)
    put("png_cut_in_header.png", png[:20], "failed", TRUNCATED)
    put("png_cut_after_header.png", png[:33], "failed", DAMAGED)
    put("png_cut_in_data.png", png[: idat + 40], "failed", TRUNCATED)
    put("png_without_end_chunk.png", png[:-12], "ok")  # every pixel is there
    put("png_bad_header_crc.png", png[:29] + b"\0\0\0\0" + png[33:], "failed", DAMAGED)
    put("png_bad_data_crc.png", png[:-16] + b"\0\0\0\0" + png[-12:], "ok")  # pixels intact; Pillow skips the CRC
    put(
        "png_corrupt_zlib.png",
        png[:33] + png_chunk(b"IDAT", b"\x78\x9c" + b"\xde\xad\xbe\xef" * 50) + png_chunk(b"IEND", b""),
        "failed",
        "broken data stream",
    )
    text_bomb = png_chunk(b"zTXt", b"comment\0\0" + zlib.compress(b"a" * 50_000_000))
    put("png_text_chunk_bomb.png", png[:33] + text_bomb + png[33:], "failed", "decompression bomb")
    zero = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 0, 0, 8, 2, 0, 0, 0))
    put("png_zero_size.png", png[:8] + zero + png[33:], "failed", DAMAGED)

    gif = encoded("GIF", 3)
    put("gif_cut_in_header.gif", gif[:13], "failed", DAMAGED)
    put("gif_cut_in_data.gif", gif[: len(gif) // 2], "failed", TRUNCATED)
    webp = encoded("WEBP", 4)
    put("webp_cut_in_header.webp", webp[:20], "failed", "corrupt")
    put("webp_cut_in_data.webp", webp[: len(webp) // 2], "failed", "corrupt")
    tiff = encoded("TIFF", 5)
    put("tiff_cut_in_header.tif", tiff[:8], "failed", DAMAGED)
    put("tiff_cut_in_data.tif", tiff[: len(tiff) // 2], "failed", TRUNCATED)
    put("tiff_directory_past_end.tif", b"II*\0" + struct.pack("<I", 10_000_000), "failed", DAMAGED)
    put("tiff_65535_entries.tif", b"II*\0" + struct.pack("<IH", 8, 65535) + b"\0" * 16, "failed", DAMAGED)
    bmp = encoded("BMP", 6)
    put("bmp_cut_in_data.bmp", bmp[: len(bmp) // 2], "failed", TRUNCATED)

    # Broken metadata in a good picture: the picture is imported, the EXIF orientation read as 1
    put("exif_garbage.jpg", jpeg_with_segment(b"Exif\0\0" + b"\x13\x37" * 100, 7), "ok")
    bad_ifd = b"Exif\0\0II*\0" + struct.pack("<IH", 8, 0xFFFF) + b"\x12\x01\x03\x00" * 10
    put("exif_bad_directory.jpg", jpeg_with_segment(bad_ifd, 8), "ok")
    huge = b"".join(struct.pack("<HHII", 0x010E, 2, 0x7FFFFFFF, 0x7FFFFFF0) for _ in range(5000))
    put(
        "exif_oversized.jpg",
        jpeg_with_segment((b"Exif\0\0II*\0" + struct.pack("<IH", 8, 5000) + huge)[:65000], 9),
        "ok",
    )
    put("xmp_entity_bomb.jpg", jpeg_with_segment(b"http://ns.adobe.com/xap/1.0/\0" + ENTITY_BOMB, 10), "ok")

    put("document.jpg", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n", "failed")
    put(
        "drawing.png", b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><rect width="9"/></svg>', "failed"
    )
    put("page.gif", b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>", "failed")
    put("noise.webp", random_bytes(4096, 11), "failed")
    for name in ("document.jpg", "drawing.png", "page.gif", "noise.webp"):
        cases[name] = ("failed", NOT_AN_IMAGE)

    put("bomb_over_limit.png", png_claiming(15000, 15000), "failed", BOMB.format("15000x15000 is 225000000 pixels,"))
    put("bomb_far_over_limit.png", png_claiming(50000, 50000), "failed", BOMB.format("2500000000 pixels,"))
    screen = b"GIF89a" + struct.pack("<HHBBB", 65535, 65535, 0, 0, 0)
    put(
        "bomb.gif",
        screen + b",\0\0\0\0\xff\xff\xff\xff\0\x02\x02\x44\x01\0;",
        "failed",
        BOMB.format("4294836225 pixels,"),
    )
    sof = jpeg.index(b"\xff\xc0")
    claims = jpeg[: sof + 5] + struct.pack(">HH", 65500, 65500) + jpeg[sof + 9 :]
    put("bomb.jpg", claims, "failed", BOMB.format("4290250000 pixels,"))
    return cases


def write_odd_files(folder: Path) -> dict[str, tuple[str, str]]:
    """Files that are fine but unusual: odd modes, names, links and keywords. Name -> (status, error words)."""
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is a text file, not a JPEG\n")
    PILImage.new("CMYK", (40, 30), (0, 255, 255, 0)).save(folder / "cmyk.jpg", "JPEG")
    PILImage.fromarray(np.linspace(0, 65535, 40 * 30, dtype=np.uint16).reshape(30, 40)).save(folder / "deep16.png")
    frames = [PILImage.new("RGB", (32, 32), color) for color in ("red", "green", "blue")]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    PILImage.new("RGBA", (40, 30), (255, 0, 0, 128)).save(folder / "alpha.png")
    for fmt, name in (("PNG", "good.png"), ("WEBP", "good.webp"), ("TIFF", "good.tif"), ("BMP", "good.bmp")):
        (folder / name).write_bytes(encoded(fmt, 20 + len(name), size=(50, 40)))
    make_jpeg(folder / "rotated.jpg", size=(60, 40), orientation=6)
    make_jpeg(folder / "orientation_99.jpg", size=(60, 40), orientation=99, color=(3, 3, 3))
    make_jpeg(folder / "with spaces and ünïcödé 画像.jpg", color=(10, 200, 90))
    make_jpeg(folder / "new\nline.jpg", color=(90, 10, 200))
    make_jpeg(folder / "locked.jpg", color=(1, 2, 3))
    os.chmod(folder / "locked.jpg", 0)
    make_jpeg(folder / "keywords_control.jpg", color=(7, 7, 7))
    write_keywords(folder / "keywords_control.jpg", iptc=["bell\x07ringing", "esc\x1bape", "tab\tbed", "\x7f"])
    make_jpeg(folder / "keywords_thousands.jpg", color=(8, 8, 8))
    write_keywords(folder / "keywords_thousands.jpg", subject=[f"keyword {n}" for n in range(3000)])
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
        "notes.jpg": ("failed", NOT_AN_IMAGE),
        "cmyk.jpg": ("ok", ""),
        "deep16.png": ("ok", ""),
        "animated.gif": ("ok", ""),
        "alpha.png": ("ok", ""),
        "good.png": ("ok", ""),
        "good.webp": ("ok", ""),
        "good.tif": ("ok", ""),
        "good.bmp": ("ok", ""),
        "rotated.jpg": ("ok", ""),
        "orientation_99.jpg": ("ok", ""),
        "with spaces and ünïcödé 画像.jpg": ("ok", ""),
        "new\nline.jpg": ("ok", ""),
        "locked.jpg": unreadable,  # root reads a mode-000 file; the pipe and links below stay unreadable
        "keywords_control.jpg": ("ok", ""),
        "keywords_thousands.jpg": ("ok", ""),
        "pipe.jpg": ("failed", "not a regular file"),
        "dangling.jpg": ("failed", "broken symlink"),
        "loop_a.jpg": ("failed", "symlink loop"),
        "loop_b.jpg": ("failed", "symlink loop"),
        "sub/inside.jpg": ("ok", ""),
    }


def fingerprints(folder: Path) -> dict[str, tuple[str, int]]:
    """Content hash and mtime of every regular file, to prove nothing was modified."""
    found = {}
    for path in folder.rglob("*"):
        if path.is_symlink() or not path.is_file() or path.is_fifo():
            continue
        found[str(path)] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    return found


@pytest.fixture(scope="module")
def imported(django_db_setup, django_db_blocker, tmp_path_factory):
    """One import batch of every case, through the command a user runs (so it is recorded as a job)."""
    folder = tmp_path_factory.mktemp("bad") / "input"
    folder.mkdir()
    expected = {**write_broken_files(folder), **write_odd_files(folder)}
    before = fingerprints(folder)
    with django_db_blocker.unblock():
        call_command("import_images", str(folder), verbosity=0)
        job = Job.objects.filter(kind="import_images").latest("pk")
        rows = {str(Path(row.path).relative_to(folder)): row for row in Image.objects.filter(path__startswith=folder)}
        stages = {row.image.path: row for row in ImageStage.objects.filter(stage="ingest").select_related("image")}
        tags = {name: sorted(row.tags.values_list("name", flat=True)) for name, row in rows.items()}
    yield folder, expected, before, job, rows, stages, tags
    with django_db_blocker.unblock():  # committed outside the tests' transactions: leave the database empty
        Image.objects.all().delete()
        Tag.objects.all().delete()
        Job.objects.all().delete()


def test_the_batch_holds_over_forty_bad_or_odd_files(imported):
    _, expected, _, job, rows, *_ = imported
    assert len(expected) >= 40
    assert set(expected) <= set(rows)
    assert job.status != "failed", job.message


def test_each_file_gets_a_clear_recorded_outcome(imported):
    folder, expected, _, job, rows, stages, _ = imported
    errors = {entry["item"]: entry["error"] for entry in job.errors}
    wrong = []
    for name, (status, words) in expected.items():
        row = rows[name]
        if row.status != status or words not in row.error:
            wrong.append((name, row.status, row.error))
            continue
        if status == "ok":
            assert row.thumbnail and row.width and row.height and len(row.sha256) == 64, name
            assert stages[row.path].status == "done", name
        else:
            assert errors[row.path] == row.error, name  # the job names the file, with the same reason
            assert not re.search(r"\b[A-Z][a-z]+(Error|Exception)\b|Traceback", row.error), row.error  # for a person
            if row.path in stages:
                assert stages[row.path].status == "failed" and stages[row.path].error == row.error
    assert not wrong, wrong


def test_every_good_file_is_imported(imported):
    _, expected, _, job, rows, *_ = imported
    good = [name for name, (status, _) in expected.items() if status == "ok"]
    assert len(good) >= 20
    assert all(rows[name].status == "ok" for name in good)
    assert job.counts["new"] == len(good)


def test_no_file_is_modified(imported):
    folder, _, before, *_ = imported
    assert fingerprints(folder) == before


def test_the_directory_loop_was_not_followed(imported):
    *_, rows, _, _ = imported
    assert not any("back_to_top" in name for name in rows)


def test_the_bomb_message_quotes_the_configured_limit(imported):
    *_, rows, _, _ = imported
    for name in ("bomb_over_limit.png", "bomb_far_over_limit.png", "bomb.gif", "bomb.jpg"):
        assert f"over the limit of {LIMIT} pixels" in rows[name].error
        assert str(2 * LIMIT) not in rows[name].error  # Pillow's own, doubled limit


def test_keywords_with_control_characters_and_thousands_of_keywords(imported):
    *_, rows, _, tags = imported
    assert tags["keywords_control.jpg"] == ["bell_ringing", "esc_ape", "tab_bed"]
    assert len(tags["keywords_thousands.jpg"]) == 3000
    assert tags["xmp_entity_bomb.jpg"] == ["&i;"]  # ExifTool leaves the entity unexpanded: no billion laughs


def test_odd_images_are_decoded_correctly(imported):
    *_, rows, _, _ = imported
    assert (rows["rotated.jpg"].width, rows["rotated.jpg"].height) == (40, 60)  # orientation 6 turns it
    assert rows["rotated.jpg"].orientation == 6
    assert rows["orientation_99.jpg"].orientation == 1 and rows["exif_oversized.jpg"].orientation == 1
    assert rows["animated.gif"].frames == 3
    assert rows["cmyk.jpg"].format == "JPEG"
    thumb = PILImage.open(Path(os.environ["TAGSITE_MEDIA_DIR"]) / rows["alpha.png"].thumbnail)
    red, green, blue = thumb.convert("RGB").getpixel((5, 5))
    assert red > 250 and 110 < green < 145  # half-transparent red over white, not over black
    deep = PILImage.open(Path(os.environ["TAGSITE_MEDIA_DIR"]) / rows["deep16.png"].thumbnail).convert("L")
    assert deep.getpixel((deep.width - 1, deep.height - 1)) > 200  # 16-bit scaled, not clipped to white or black


@pytest.fixture(scope="module")
def console_of_an_import(django_db_setup, django_db_blocker, tmp_path_factory):
    """The import command a user runs, in its own process, on bombs and broken EXIF: what its console shows."""
    from tests.conftest import ROOT, database_url

    folder = tmp_path_factory.mktemp("console")
    (folder / "between.png").write_bytes(png_claiming(15000, 15000))  # Pillow warns here, errors at twice
    (folder / "far.png").write_bytes(png_claiming(50000, 50000))
    (folder / "exif.jpg").write_bytes(jpeg_with_segment(b"Exif\0\0II*\0" + struct.pack("<IH", 8, 0xFFFF), 3))
    with django_db_blocker.unblock():
        env = {**os.environ, "DATABASE_URL": database_url()}
        done = subprocess.run(
            [sys.executable, "manage.py", "import_images", str(folder)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        yield done
        Image.objects.filter(path__startswith=str(folder)).delete()
        Job.objects.filter(params__path=str(folder)).delete()


def test_no_decompression_bomb_warning_reaches_the_console(console_of_an_import):
    console = console_of_an_import.stdout + console_of_an_import.stderr
    assert console_of_an_import.returncode == 0, console
    assert "Warning" not in console, console
    assert console.count(f"over the limit of {LIMIT} pixels") >= 2 and str(2 * LIMIT) not in console
    assert "1 new" in console  # the picture with the broken EXIF block


def fault_in_reader(monkeypatch, victim: str):
    """The decoder raises something nobody expected for one file."""
    real = ingest.imaging.open_image

    def open_image(data, **kwargs):
        if hashlib.sha256(data.getvalue()).hexdigest() == victim:
            raise RuntimeError("decoder bug")
        return real(data, **kwargs)

    monkeypatch.setattr(ingest.imaging, "open_image", open_image)


def fault_in_inspection(monkeypatch, victim: str):
    """The whole per-file inspection raises (a bug past the reader's own net): the loop's net catches it."""
    real = ingest.inspect_file

    def inspect_file(path):
        if hashlib.sha256(Path(path).read_bytes()).hexdigest() == victim:
            raise RuntimeError("inspection bug")
        return real(path)

    monkeypatch.setattr(ingest, "inspect_file", inspect_file)


def fault_in_saving(monkeypatch, victim: str):
    """Tagging one file's keywords fails in the database: that file is failed, the chunk's transaction lives."""
    real = ingest.add_tags

    def add_tags(images, names, **kwargs):
        if any(image.sha256 == victim for image in images):
            from django.db import connection

            connection.cursor().execute("SELECT 1/0")  # a real database error inside the chunk's transaction
        return real(images, names, **kwargs)

    monkeypatch.setattr(ingest, "add_tags", add_tags)


@pytest.mark.parametrize("inject", [fault_in_reader, fault_in_inspection, fault_in_saving])
def test_an_unexpected_error_costs_only_its_own_file(image_folder, monkeypatch, inject):
    victim = image_folder / "photo1.jpg"
    write_keywords(victim, subject=["victim"])
    inject(monkeypatch, hashlib.sha256(victim.read_bytes()).hexdigest())
    counts = import_folder(image_folder)
    rows = {Path(row.path).name: row for row in Image.objects.all()}
    assert counts["new"] == 2 and counts["failed"] == 1
    assert rows["photo0.jpg"].status == rows["photo2.jpg"].status == "ok"
    assert rows["photo1.jpg"].status == "failed" and "could not be read" in rows["photo1.jpg"].error
    assert ImageStage.objects.get(image=rows["photo1.jpg"], stage="ingest").status == "failed"


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
