"""Metadata write-back: real files, the real ExifTool, read back by ExifTool and by Exiv2 (what digiKam uses)."""

import hashlib
import json
import os
import shutil
import subprocess

import pytest
from django.contrib.auth.models import User

from categorization.models import ExtendedCategory, TagCategory
from tagsite.models import Image, Tag
from tagsite.services import writeback
from tagsite.services.ingest import import_folder
from tagsite.services.tags import add_tags
from tagsite.services.writeback import WriteOptions, write_images
from tests.factories import make_jpeg, write_keywords

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def metadata_dir(settings, tmp_path):
    settings.METADATA_DIR = tmp_path / "var-metadata"
    settings.METADATA_WRITE_THREADS = 2
    settings.METADATA_BATCH_SIZE = 2
    return settings.METADATA_DIR


def exiftool_fields(path) -> dict:
    """Read with a separate `exiftool` process: what any program using ExifTool sees."""
    out = subprocess.run(
        ["exiftool", "-m", "-j", "-G1", "-struct", "-XMP-dc:all", "-XMP-lr:all", "-IPTC:all", "-IFD0:all", str(path)],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    record = json.loads(out, parse_int=str, parse_float=str)[0]
    return {key: value if isinstance(value, list) else [value] for key, value in record.items()}


def exiv2_values(path, key: str) -> list[str]:
    """Exiv2's reading of one key: each repeated IPTC record, or an XMP bag's items (`-pv` prints one per line)."""
    out = subprocess.run(
        ["exiv2", "-q", "-Pkv", "-K", key, str(path)], capture_output=True, text=True, check=False
    ).stdout
    values = [line.split(None, 1)[1] if " " in line.strip() else "" for line in out.splitlines() if line.strip()]
    if key.startswith("Xmp.") and values and key != "Xmp.dc.title":
        return values[0].split(", ")
    return values


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def tag(image: Image, *names: str) -> None:
    add_tags([image], list(names))


def test_tags_and_categories_are_written_verified_and_recorded(image_folder, admin_client):
    import_folder(image_folder)
    image = Image.objects.get(path=str(image_folder / "photo0.jpg"))
    tag(image, "long_hair", "Küste", "party 🎉", "1.50")
    body_hair = ExtendedCategory.objects.get_or_create(
        code="04_Body_Hair", defaults={"name": "Body Hair", "description": "hair", "group": "identity"}
    )[0]
    TagCategory.objects.create(tag=Tag.objects.get(name="long_hair"), category=body_hair)
    assert writeback.dirty_ids([image]) == [image.pk]

    counts = write_images([image.pk], WriteOptions())

    assert counts == {"written": 1}
    expected = ["1.50", "Küste", "long hair", "party 🎉"]
    fields = exiftool_fields(image.path)
    assert fields["XMP-dc:Subject"] == expected
    assert fields["IPTC:Keywords"] == expected
    assert fields["XMP-lr:HierarchicalSubject"] == ["Body Hair|long hair"]
    assert exiv2_values(image.path, "Xmp.dc.subject") == expected
    assert exiv2_values(image.path, "Iptc.Application2.Keywords") == expected
    assert exiv2_values(image.path, "Xmp.lr.hierarchicalSubject") == ["Body Hair|long hair"]
    image.refresh_from_db()
    info = os.stat(image.path)
    assert (image.size, image.mtime, image.sha256) == (info.st_size, info.st_mtime, sha256(image.path))
    assert image.metadata_written_at is not None and writeback.dirty_ids([image]) == []
    assert import_folder(image_folder)["unchanged"] == 3  # the rescan sees no changed file
    served = admin_client.get(f"/images/{image.pk}/file")  # the file view keeps serving it
    assert served.status_code == 200 and b"".join(served.streaming_content) == open(image.path, "rb").read()
    assert not [name for name in os.listdir(image_folder) if writeback.TEMPORARY_MARK in name]

    tag(image, "sunset")
    assert writeback.dirty_ids([image]) == [image.pk]
    assert writeback.all_dirty_ids() == [image.pk]  # the untagged, never-written photos are not dirty


def test_append_merges_case_insensitively_and_replace_keeps_what_it_would_drop(image_folder):
    write_keywords(image_folder / "photo0.jpg", subject=["SUNSET", "Beach"], iptc=["SUNSET", "Beach"])
    import_folder(image_folder)
    image = Image.objects.get(path=str(image_folder / "photo0.jpg"))
    tag(image, "sunset", "dog")
    image.image_tags.filter(tag__name="beach").delete()

    original = sha256(image.path)
    result = write_images([image.pk], WriteOptions(mode="replace"))
    assert result == {"skipped": 1} and sha256(image.path) == original  # Beach would be dropped

    assert write_images([image.pk], WriteOptions(mode="append")) == {"written": 1}
    assert exiftool_fields(image.path)["XMP-dc:Subject"] == ["SUNSET", "Beach", "dog"]
    assert exiv2_values(image.path, "Iptc.Application2.Keywords") == ["SUNSET", "Beach", "dog"]

    image.refresh_from_db()
    assert write_images([image.pk], WriteOptions(mode="replace", overwrite=True)) == {"written": 1}
    assert exiv2_values(image.path, "Xmp.dc.subject") == ["dog", "SUNSET"]


def test_dry_run_shows_each_fields_diff_and_writes_nothing(image_folder, metadata_dir):
    import_folder(image_folder)
    image = Image.objects.get(path=str(image_folder / "photo1.jpg"))
    tag(image, "forest")
    seen = []
    before = sha256(image.path)
    counts = write_images([image.pk], WriteOptions(dry_run=True), run="dry", on_result=seen.append)
    assert counts == {"dry-run": 1} and sha256(image.path) == before
    assert seen[0].diff()["XMP-dc:Subject"] == ([], ["forest"])
    assert seen[0].diff()["IPTC:Keywords"] == ([], ["forest"])
    record = json.loads((metadata_dir / "dry" / "audit.jsonl").read_text().splitlines()[0])
    assert record["status"] == "dry-run" and record["changes"]["XMP-dc:Subject"] == {"before": [], "after": ["forest"]}
    assert "1 dry-run" in (metadata_dir / "dry" / "summary.md").read_text()
    image.refresh_from_db()
    assert image.metadata_written_at is None


def test_a_file_changed_since_import_is_refused(image_folder, settings):
    import_folder(image_folder)
    image = Image.objects.get(path=str(image_folder / "photo0.jpg"))
    tag(image, "edited")
    write_keywords(image_folder / "photo0.jpg", subject=["someone else's edit"])
    newer = sha256(image.path)
    seen = []
    assert write_images([image.pk], WriteOptions(), on_result=seen.append, run="stale") == {"failed": 1}
    assert "changed by another program" in seen[0].error and sha256(image.path) == newer
    summary = (settings.METADATA_DIR / "stale" / "summary.md").read_text()
    assert f"## Failed or skipped\n\n- {image.path}: changed by another program" in summary


def test_backups_go_under_var_not_beside_the_file(image_folder, metadata_dir):
    import_folder(image_folder)
    image = Image.objects.get(path=str(image_folder / "photo2.jpg"))
    original = open(image.path, "rb").read()
    tag(image, "kept")
    write_images([image.pk], WriteOptions(backup=True))
    backups = list((metadata_dir / "backups").rglob("photo2.jpg"))
    assert len(backups) == 1 and backups[0].read_bytes() == original
    assert sorted(os.listdir(image_folder)) == ["photo0.jpg", "photo1.jpg", "photo2.jpg"]


@pytest.mark.parametrize(("naming", "sidecar_name"), [("darktable", "photo0.jpg.xmp"), ("adobe", "photo0.xmp")])
def test_a_read_only_file_gets_a_sidecar_named_by_the_setting(image_folder, settings, naming, sidecar_name):
    settings.METADATA_SIDECAR_NAMING = naming
    import_folder(image_folder)
    image = Image.objects.get(path=str(image_folder / "photo0.jpg"))
    tag(image, "in the sidecar")
    os.chmod(image.path, 0o444)
    before = sha256(image.path)
    seen = []
    assert write_images([image.pk], WriteOptions(), on_result=seen.append) == {"written": 1}, seen[0].error
    assert sha256(image.path) == before
    sidecar = image_folder / sidecar_name
    assert exiv2_values(sidecar, "Xmp.dc.subject") == ["in the sidecar"]
    image.refresh_from_db()
    assert image.sha256 == before and writeback.dirty_ids([image]) == []
    assert import_folder(image_folder) == {"unchanged": 3, "missing": 0}  # its own sidecar is not news to tagsite


def test_sidecar_only_never_touches_originals_and_sidecars_off_is_a_clear_error(image_folder, settings):
    import_folder(image_folder)
    image = Image.objects.get(path=str(image_folder / "photo0.jpg"))
    tag(image, "aside")
    before = sha256(image.path)
    assert write_images([image.pk], WriteOptions(sidecar_only=True)) == {"written": 1}
    assert sha256(image.path) == before and (image_folder / "photo0.jpg.xmp").exists()

    other = Image.objects.get(path=str(image_folder / "photo1.jpg"))
    tag(other, "nowhere")
    os.chmod(other.path, 0o444)
    settings.METADATA_SIDECARS = False
    seen = []
    assert write_images([other.pk], WriteOptions(), on_result=seen.append) == {"failed": 1}
    assert seen[0].error == "the file is read-only and sidecars are off (TAGSITE_METADATA_SIDECARS)"


def test_what_each_format_holds(tmp_path):
    from PIL import Image as PILImage

    folder = tmp_path / "formats"
    folder.mkdir()
    names = ("a.png", "a.tif", "a.gif", "a.bmp", "a.webp")
    for name in names:
        PILImage.new("RGB", (40, 30), (10, 200, 90)).save(folder / name)
    import_folder(folder)
    images = {Image.objects.get(path=str(folder / name)).pk: name for name in names}
    for pk in images:
        tag(Image.objects.get(pk=pk), "green")
    seen = {}
    write_images(list(images), WriteOptions(), on_result=lambda r: seen.setdefault(images[r.image_id], r))
    assert {name: r.status for name, r in seen.items()} == dict.fromkeys(images.values(), "written")
    assert set(seen["a.png"].after) == {"XMP-dc:Subject", "XMP-lr:HierarchicalSubject"}  # XMP only
    assert set(seen["a.webp"].after) == {"XMP-dc:Subject", "XMP-lr:HierarchicalSubject"}  # no IPTC in WebP
    assert "IPTC:Keywords" in seen["a.tif"].after
    assert seen["a.bmp"].sidecar and seen["a.bmp"].target == str(folder / "a.bmp.xmp")  # ExifTool cannot write BMP
    assert exiv2_values(folder / "a.png", "Xmp.dc.subject") == ["green"]
    assert exiv2_values(folder / "a.webp", "Xmp.dc.subject") == ["green"]
    assert exiv2_values(folder / "a.tif", "Iptc.Application2.Keywords") == ["green"]


def test_iptc_keywords_are_cut_at_64_bytes_on_a_character_boundary_and_reported(image_folder, metadata_dir):
    import_folder(image_folder)
    image = Image.objects.get(path=str(image_folder / "photo0.jpg"))
    long = "ä" * 40  # 80 bytes: the 64-byte cut falls between characters, never inside one
    tag(image, long)
    seen = []
    write_images([image.pk], WriteOptions(), on_result=seen.append, run="cut")
    summary = (metadata_dir / "cut" / "summary.md").read_text()
    assert f"| {image_folder} | 1 |" in summary and f"- {image.path}: IPTC:Keywords cut to 64 bytes" in summary
    assert exiv2_values(image.path, "Iptc.Application2.Keywords") == ["ä" * 32]
    assert exiv2_values(image.path, "Xmp.dc.subject") == [long]  # XMP has no limit
    assert seen[0].notes == [f"IPTC:Keywords cut to 64 bytes: {long!r} -> {'ä' * 32!r}"]
    assert seen[0].status == "written"


# Bad input: the file is always intact, the batch goes on, the reason is recorded


def write_one(image: Image, **options) -> "writeback.FileResult":
    seen = []
    write_images([image.pk], WriteOptions(**options), on_result=seen.append)
    return seen[0]


def test_a_symlinked_file_is_written_through_and_stays_a_link(tmp_path):
    real_folder, folder = tmp_path / "real", tmp_path / "library"
    real_folder.mkdir()
    folder.mkdir()
    make_jpeg(real_folder / "photo.jpg")
    (folder / "link.jpg").symlink_to(real_folder / "photo.jpg")
    import_folder(folder)
    image = Image.objects.get(path=str(folder / "link.jpg"))
    tag(image, "linked")
    assert write_one(image).status == "written"
    assert os.path.islink(folder / "link.jpg") and os.readlink(folder / "link.jpg") == str(real_folder / "photo.jpg")
    assert exiv2_values(real_folder / "photo.jpg", "Xmp.dc.subject") == ["linked"]
    image.refresh_from_db()
    assert image.sha256 == sha256(real_folder / "photo.jpg")


def test_a_folder_without_write_permission_is_a_clear_error(image_folder):
    import_folder(image_folder)
    image = Image.objects.get(path=str(image_folder / "photo0.jpg"))
    tag(image, "locked")
    before = sha256(image.path)
    os.chmod(image_folder, 0o555)
    try:
        result = write_one(image)
    finally:
        os.chmod(image_folder, 0o755)
    assert result.status == "failed" and result.error.startswith("no write permission in the folder")
    assert sha256(image.path) == before and sorted(os.listdir(image_folder)) == [f"photo{i}.jpg" for i in range(3)]


def test_a_corrupt_jpeg_exiftool_refuses_is_left_as_it_was_and_the_batch_goes_on(image_folder):
    import_folder(image_folder)
    broken, fine = (Image.objects.get(path=str(image_folder / f"photo{i}.jpg")) for i in (0, 1))
    data = open(broken.path, "rb").read()
    corrupt = data[:2] + b"\xff\xe1\xff\xff" + data[2:]  # an APP1 segment longer than the file
    with open(broken.path, "wb") as handle:
        handle.write(corrupt)
    info = os.stat(broken.path)  # as if it had been imported so: only ExifTool minds
    Image.objects.filter(pk=broken.pk).update(size=info.st_size, mtime=info.st_mtime, sha256=sha256(broken.path))
    for image in (broken, fine):
        tag(image, "still here")
    seen = []
    write_images([broken.pk, fine.pk], WriteOptions(), on_result=seen.append)
    by_id = {result.image_id: result for result in seen}
    assert by_id[broken.pk].status == "failed" and "Corrupted JPEG image" in by_id[broken.pk].error
    assert open(broken.path, "rb").read() == corrupt
    assert by_id[fine.pk].status == "written"
    assert not [name for name in os.listdir(image_folder) if writeback.TEMPORARY_MARK in name]


def test_a_huge_existing_xmp_block_is_kept_and_2000_keywords_are_written(image_folder):
    description = "long description " * 2400  # about 40 KB of XMP already in the file
    subprocess.run(
        [
            "exiftool",
            "-q",
            "-overwrite_original",
            f"-XMP-dc:Description={description}",
            str(image_folder / "photo0.jpg"),
        ],
        check=True,
    )
    import_folder(image_folder)
    huge, many = (Image.objects.get(path=str(image_folder / f"photo{i}.jpg")) for i in (0, 1))
    tag(huge, "small addition")
    names = [f"keyword {index:04}" for index in range(2000)]
    tag(many, *names)
    assert write_one(huge, mode="append").status == "written"
    fields = exiftool_fields(huge.path)
    assert fields["XMP-dc:Subject"] == ["small addition"] and fields["XMP-dc:Description"] == [description]
    assert write_one(many).status == "written"
    assert exiftool_fields(many.path)["XMP-dc:Subject"] == names
    assert len(exiv2_values(many.path, "Iptc.Application2.Keywords")) == 2000


def test_keywords_with_separators_and_line_breaks_stay_whole(image_folder):
    import_folder(image_folder)
    image = Image.objects.get(path=str(image_folder / "photo0.jpg"))
    tag(image, "salt, pepper", "x;y", "a|b", "line\nbreak")
    category = ExtendedCategory.objects.get_or_create(
        code="13_Object", defaults={"name": "Object", "description": "things", "group": "context"}
    )[0]
    TagCategory.objects.create(tag=Tag.objects.get(display_name="a|b"), category=category)
    assert write_one(image).status == "written"
    expected = ["a|b", "line break", "salt, pepper", "x;y"]
    fields = exiftool_fields(image.path)
    assert fields["XMP-dc:Subject"] == expected and fields["IPTC:Keywords"] == expected
    assert fields["XMP-lr:HierarchicalSubject"] == ["Object|a/b"]  # `|` inside a tag is not a level
    assert exiv2_values(image.path, "Iptc.Application2.Keywords") == expected


@pytest.fixture
def small_disk(tmp_path):
    """A 300 KB tmpfs: a real file system that fills up. Needs root (mount), as the test machine runs."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_disk_full_during_the_temporary_copy_leaves_the_file_intact(small_disk):
    folder = small_disk / "library"
    folder.mkdir()
    make_jpeg(folder / "big.jpg", size=(900, 600))
    assert 150_000 < os.path.getsize(folder / "big.jpg") < 300_000  # the copy cannot fit beside it
    import_folder(folder)
    image = Image.objects.get(path=str(folder / "big.jpg"))
    tag(image, "no room")
    before = sha256(image.path)
    result = write_one(image)
    assert result.status == "failed" and "ExifTool could not write it" in result.error, result.error
    assert sha256(image.path) == before and os.listdir(folder) == ["big.jpg"]
    image.refresh_from_db()
    assert image.sha256 == before and image.metadata_written_at is None


# Round trips


def test_existing_sidecars_are_read_on_import(image_folder):
    subprocess.run(["exiftool", "-q", "-XMP-dc:Subject=from darktable", "-o", f"{image_folder}/photo0.jpg.xmp"])
    subprocess.run(["exiftool", "-q", "-XMP-dc:Subject=from lightroom", "-o", f"{image_folder}/photo1.xmp"])
    import_folder(image_folder)

    def names(index: int) -> list[str]:
        image = Image.objects.get(path=str(image_folder / f"photo{index}.jpg"))
        return sorted(image.tags.values_list("name", flat=True))

    assert (names(0), names(1), names(2)) == (["from_darktable"], ["from_lightroom"], [])


def test_a_library_tagged_elsewhere_comes_back_exactly_after_approving_and_writing(image_folder, tmp_path, settings):
    from suggestions.models import TagSuggestion
    from suggestions.services import install_model, review_images, suggest_tags
    from tests.suggestions.wd14 import build_model

    settings.SUGGESTIONS_MODELS_DIR = tmp_path / "models"
    write_keywords(image_folder / "photo0.jpg", subject=["Harbour", "Boats"], iptc=["Harbour", "boats"])
    write_keywords(image_folder / "photo1.jpg", subject=["Léa", "🎉 party"])
    import_folder(image_folder)
    images = list(Image.objects.order_by("path"))
    model = install_model("wd-test", build_model(tmp_path / "wd14-src"), version="v1")
    suggest_tags(model, images)
    review_images(images, 0.0, User.objects.create(username="reviewer"))
    assert TagSuggestion.objects.filter(status="approved").exists()
    held = {image.filename: sorted(image.tags.values_list("name", flat=True)) for image in images}
    assert write_images([image.pk for image in images], WriteOptions(mode="append")) == {"written": 3}

    copy = tmp_path / "copy"
    shutil.copytree(image_folder, copy)
    Image.objects.all().delete()
    Tag.objects.all().delete()  # a fresh library: only the files speak
    import_folder(copy)
    again = {image.filename: sorted(image.tags.values_list("name", flat=True)) for image in Image.objects.all()}
    assert again == held


def test_titles_and_descriptions_map_to_their_fields_with_iptc_cuts(tmp_path):
    """The mapping a text stage will use: title -> XMP-dc:Title + IPTC:ObjectName (64 bytes), description ->
    XMP-dc:Description + IPTC:Caption-Abstract + EXIF:ImageDescription."""
    from tagsite import metadata

    make_jpeg(tmp_path / "a.jpg")
    title = "Harbour at dusk, " + "é" * 40
    held = {"keywords": [], "hierarchy": [], "title": [title], "description": ["Boats leave the harbour."]}
    values, notes = writeback.file_values({}, held, metadata.fields_for("a.jpg"), "replace")
    assert values[metadata.OBJECT_NAME] == [writeback.cut_bytes(title, 64)] and len(notes) == 1
    assert metadata.write([metadata.WriteCommand(str(tmp_path / "b.jpg"), values, str(tmp_path / "a.jpg"))]) == [""]
    assert exiv2_values(tmp_path / "b.jpg", "Iptc.Application2.ObjectName") == [writeback.cut_bytes(title, 64)]
    assert exiv2_values(tmp_path / "b.jpg", "Iptc.Application2.Caption") == ["Boats leave the harbour."]
    assert exiv2_values(tmp_path / "b.jpg", "Exif.Image.ImageDescription") == ["Boats leave the harbour."]
    assert exiftool_fields(tmp_path / "b.jpg")["XMP-dc:Title"] == [title]


def test_images_that_are_not_ok_are_not_written(image_folder):
    shutil.copy(image_folder / "photo0.jpg", image_folder / "copy.jpg")
    import_folder(image_folder)
    duplicate = Image.objects.get(status="duplicate")
    tag(duplicate, "twin")
    before = sha256(duplicate.path)
    result = write_one(duplicate)
    assert (result.status, result.error) == ("failed", "not written: the image is duplicate")
    assert sha256(duplicate.path) == before


def test_a_run_clears_temporary_copies_a_killed_run_left_an_hour_ago(image_folder):
    import_folder(image_folder)
    image = Image.objects.get(path=str(image_folder / "photo0.jpg"))
    tag(image, "tidy")
    old, fresh, other = ".photo1.jpg.tagsite-0badc0de.tmp", ".photo2.jpg.tagsite-12345678.tmp", ".photo1.jpg.keep"
    for name in (old, fresh, other):
        (image_folder / name).write_bytes(b"partial")
    os.utime(image_folder / old, (1, 1))
    assert write_one(image).status == "written"
    left = sorted(name for name in os.listdir(image_folder) if name.startswith("."))
    assert left == [other, fresh]  # a fresh one may be another run's, in progress


def test_names_in_files_follow_the_settings(image_folder, settings):
    import_folder(image_folder)
    image = Image.objects.get(path=str(image_folder / "photo0.jpg"))
    tag(image, "Tabby_Cat")
    assert writeback.held_fields([image.pk])[image.pk]["keywords"] == ["Tabby Cat"]  # display name, spaces
    settings.METADATA_TAG_NAMES = "canonical"
    assert writeback.held_fields([image.pk])[image.pk]["keywords"] == ["tabby cat"]
    settings.METADATA_UNDERSCORES_TO_SPACES = False
    assert writeback.held_fields([image.pk])[image.pk]["keywords"] == ["tabby_cat"]
    assert write_one(image).status == "written" and exiv2_values(image.path, "Xmp.dc.subject") == ["tabby_cat"]


def test_a_selection_adds_up_ids_a_search_a_folder_and_the_dirty_ones(image_folder, tmp_path):
    import_folder(image_folder)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    make_jpeg(elsewhere / "far.jpg", color=(1, 2, 3))
    import_folder(elsewhere)
    photos = {image.filename: image for image in Image.objects.all()}
    tag(photos["photo1.jpg"], "sunset")
    tag(photos["far.jpg"], "dirty one")
    pick = writeback.select_images
    assert pick(query="sunset") == [photos["photo1.jpg"].pk]
    assert sorted(pick(folder=str(image_folder))) == sorted(photos[f"photo{i}.jpg"].pk for i in range(3))
    assert sorted(pick(all_dirty=True)) == sorted([photos["photo1.jpg"].pk, photos["far.jpg"].pk])
    assert pick(ids=[photos["far.jpg"].pk], query="sunset") == [photos["far.jpg"].pk, photos["photo1.jpg"].pk]
    with pytest.raises(ValueError, match="name images to write"):
        pick()


def test_a_file_only_touched_since_import_is_still_written(image_folder):
    import_folder(image_folder)
    image = Image.objects.get(path=str(image_folder / "photo0.jpg"))
    tag(image, "touched")
    os.utime(image.path, (1_700_000_000, 1_700_000_000))  # a backup tool restored the time: same bytes
    assert write_one(image).status == "written"
    image.refresh_from_db()
    assert image.mtime == os.stat(image.path).st_mtime and image.sha256 == sha256(image.path)


# EXIF:UserComment, seed 001's fallback when XMP cannot be written

XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
RDF = (
    b"<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>"
    b"<rdf:Description rdf:about='' xmlns:dc='http://purl.org/dc/elements/1.1/'>%s</rdf:Description></rdf:RDF>"
    b"</x:xmpmeta>"
)
# Real XMP blocks ExifTool reports success on but does not rewrite (no setting forces the fallback): a segment
# with nothing after its header ("Invalid XMP"), and dc:subject twice with two list types ("Incorrect list type
# for existing XMP-dc:Subject (not changed)").
UNWRITABLE_XMP = {
    "empty XMP segment": b"",
    "two list types": RDF % b"<dc:subject><rdf:Seq><rdf:li>old</rdf:li></rdf:Seq></dc:subject>"
    b"<dc:subject><rdf:Bag><rdf:li>old2</rdf:li></rdf:Bag></dc:subject>",
}


def put_xmp_segment(path, packet: bytes) -> None:
    """Insert an APP1 XMP segment right after the JPEG's start marker, as a buggy program would leave it."""
    data = path.read_bytes()
    payload = XMP_HEADER + packet
    path.write_bytes(data[:2] + b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload + data[2:])


def raw_xmp(path) -> bytes:
    return subprocess.run(["exiftool", "-m", "-b", "-XMP", str(path)], capture_output=True, check=True).stdout


def user_comment(path) -> list[str]:
    out = subprocess.run(
        ["exiftool", "-m", "-j", "-G1", "-ExifIFD:UserComment", str(path)], capture_output=True, text=True, check=True
    ).stdout
    value = json.loads(out)[0].get("ExifIFD:UserComment")
    return [] if value is None else [value]


@pytest.mark.parametrize("packet", UNWRITABLE_XMP.values(), ids=UNWRITABLE_XMP.keys())
def test_a_jpeg_whose_xmp_cannot_be_written_gets_its_keywords_in_exif_usercomment(image_folder, metadata_dir, packet):
    """Natural cases, no setting forcing the fallback: XMP blocks ExifTool reports success on and leaves as they
    were (UNWRITABLE_XMP), beside a file whose XMP takes the write, in one batch."""
    broken, fine = image_folder / "photo0.jpg", image_folder / "photo1.jpg"
    put_xmp_segment(broken, packet)
    import_folder(image_folder)
    image, other = Image.objects.get(path=str(broken)), Image.objects.get(path=str(fine))
    tag(image, "Küste", "party 🎉", "long_hair")
    tag(other, "dusk")
    xmp_before = raw_xmp(broken)
    seen = {}

    counts = write_images(
        [image.pk, other.pk], WriteOptions(), on_result=lambda result: seen.update({result.path: result})
    )

    assert counts == {"written": 2}, [result.error for result in seen.values()]
    expected = writeback.held_fields([image.pk])[image.pk]["keywords"]  # the file's own keywords, and tagsite's
    assert user_comment(broken) == [", ".join(expected)]
    assert exiftool_fields(broken)["IPTC:Keywords"] == expected  # the other fields are written as ever
    assert raw_xmp(broken) == xmp_before  # its XMP block stays as it was, byte for byte
    result = seen[str(broken)]
    assert result.fallback == "EXIF:UserComment" and "cannot be written" in result.notes[-1]
    assert result.diff()["ExifIFD:UserComment"] == ([], [", ".join(expected)])
    assert "XMP-dc:Subject" not in result.after  # the audit says what the file holds, not what was meant
    assert seen[str(fine)].fallback == "" and user_comment(fine) == []  # a file whose XMP takes it: no fallback
    image.refresh_from_db()
    other.refresh_from_db()
    assert (image.metadata_fallback, other.metadata_fallback) == ("EXIF:UserComment", "")
    assert image.sha256 == sha256(broken) and writeback.dirty_ids([image, other]) == []
    audit = [json.loads(line) for line in next(metadata_dir.glob("run-*/audit.jsonl")).read_text().splitlines()]
    assert {record["path"]: record["fallback"] for record in audit} == {str(broken): "EXIF:UserComment", str(fine): ""}
    assert import_folder(image_folder)["unchanged"] == 3  # the write updated the record: no re-import

    tag(image, "harbour")  # tagsite's own comment is replaced by the next fallback
    assert write_images([image.pk], WriteOptions()) == {"written": 1}
    assert user_comment(broken) == [", ".join(sorted([*expected, "harbour"], key=str.casefold))]


def test_the_fallback_keeps_another_programs_usercomment_unless_told_to_overwrite(image_folder):
    path = image_folder / "photo0.jpg"
    put_xmp_segment(path, UNWRITABLE_XMP["empty XMP segment"])
    subprocess.run(["exiftool", "-q", "-overwrite_original", "-EXIF:UserComment=Holiday in Brittany", str(path)])
    import_folder(image_folder)
    image = Image.objects.get(path=str(path))
    tag(image, "beach")
    before = sha256(path)

    result = write_one(image)
    assert result.status == "failed" and "holds other text ('Holiday in Brittany')" in result.error, result.error
    assert sha256(path) == before

    assert write_one(image, overwrite=True).status == "written"
    assert user_comment(path) == ["beach"]


def test_a_tiff_whose_xmp_cannot_be_written_falls_back_too(tmp_path):
    from PIL import Image as PILImage

    folder, packet = tmp_path / "scans", tmp_path / "packet.xmp"
    folder.mkdir()
    path = folder / "scan.tif"
    PILImage.new("RGB", (32, 32), (5, 6, 7)).save(path)
    packet.write_bytes(UNWRITABLE_XMP["two list types"])
    subprocess.run(["exiftool", "-q", "-overwrite_original", f"-XMP<={packet}", str(path)], check=True)
    import_folder(folder)
    image = Image.objects.get(path=str(path))
    tag(image, "scanned", "négatif")

    result = write_one(image)

    assert result.status == "written" and result.fallback == "EXIF:UserComment", result.error
    assert user_comment(path) == [", ".join(writeback.held_fields([image.pk])[image.pk]["keywords"])]


def test_an_exiftool_that_dies_mid_command_fails_the_read_instead_of_spinning():
    """pyexiftool's reader looped forever at end of file (a killed ExifTool held a writer thread at 100 % CPU)."""
    import threading

    import exiftool

    import tagsite.metadata  # noqa: F401 - replaces the reader

    read, write = os.pipe()
    os.write(write, b'[{"SourceFile": "half an answer')
    os.close(write)
    raised = []

    def read_to_the_end():
        try:
            exiftool.exiftool._read_fd_endswith(read, b"{ready}", 4096)
        except BrokenPipeError as exc:
            raised.append(exc)

    reader = threading.Thread(target=read_to_the_end, daemon=True)
    reader.start()
    reader.join(5)
    os.close(read)
    assert raised and "exited in the middle of a command" in str(raised[0])
