"""Bringing files into the library: folder scans with change detection, single files, uploads.

The content hash identifies an image. A scan stats every file but hashes and decodes only
new or changed ones (size or mtime differ, or an XMP sidecar's), so a rescan of an unchanged folder does no work.
Files are only ever read: ingest never writes to a user's file.
"""

import errno
import hashlib
import io
import logging
import os
import stat
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.dispatch import Signal

from tagsite import imaging, metadata
from tagsite.models import Image, ImageStage, ImageTag
from tagsite.services.jobs import JobProgress, summarize_counts
from tagsite.services.tags import add_tags

logger = logging.getLogger(__name__)

# Sent with `image_ids` of images that are new or whose content changed; later stages hook in here.
images_ingested = Signal()

CHUNK_SIZE = 16

# Kernel views, never walked: /proc/*/cwd and /proc/*/root lead into every process's files.
NEVER_WALKED = ("/proc", "/sys", "/dev")


class ImportRefused(ValueError):
    """A folder that may not be imported: relative, not a folder, outside the import roots, or tagsite's own."""


@dataclass
class FileFacts:
    path: str
    size: int = 0
    mtime: float = 0.0
    sha256: str = ""
    format: str = ""
    width: int | None = None
    height: int | None = None
    orientation: int = 1
    frames: int = 1
    thumbnail: str = ""
    may_have_keywords: bool = False
    keywords: list[str] = field(default_factory=list)
    sidecars: dict[str, list[float]] = field(default_factory=dict)  # sidecar path -> [size, mtime] as read
    error: str = ""


@dataclass
class ScanResult:
    files: dict[str, tuple[int, float]]  # path -> (size, mtime)
    errors: dict[str, str]  # file path -> why it cannot be read
    skipped_folders: dict[str, str]  # folder -> why it cannot be listed: its images are not "gone"
    sidecars: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # path -> its sidecars' [size, mtime]


def scan_folder(
    root: str | Path, extensions: Iterable[str] | None = None, roots: Iterable[str] | None = None, recursive=True
) -> ScanResult:
    """Image files below `root` (only its own without `recursive`), following symlinks but never around a loop,
    out of `roots` (None: anywhere), into /proc, /sys or /dev, or into tagsite's own media and var folders."""
    wanted = {ext.lower() for ext in (extensions or settings.IMAGE_EXTENSIONS)}
    allowed = [os.path.realpath(folder) for folder in roots] if roots is not None else None
    own = own_folders()
    files: dict[str, tuple[int, float]] = {}
    sidecars: dict[str, dict[str, list[float]]] = {}
    errors: dict[str, str] = {}
    skipped: dict[str, str] = {}
    seen_dirs: set[tuple[int, int]] = set()
    root = str(root)
    stack = [(root, os.path.realpath(root))]
    while stack:
        folder, real_folder = stack.pop()
        try:
            info = os.stat(folder)
            if (info.st_dev, info.st_ino) in seen_dirs:
                continue
            seen_dirs.add((info.st_dev, info.st_ino))
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError as exc:
            skipped[folder] = describe_os_error(exc)
            continue
        xmp_names = {entry.name for entry in entries if entry.name.lower().endswith(".xmp")}
        for entry in entries:
            full = entry.path
            try:
                link = entry.is_symlink()
                real = os.path.realpath(full) if link else os.path.join(real_folder, entry.name)
                if entry.is_dir():
                    if not recursive:
                        continue
                    if why := refusal(real, allowed, own):
                        skipped[full] = why
                    else:
                        stack.append((full, real))
                    continue
                if os.path.splitext(entry.name)[1].lower() not in wanted:
                    continue
                if link and (why := refusal(real, allowed, own)):
                    errors[full] = why
                    continue
                info = entry.stat()
            except OSError as exc:
                if os.path.splitext(entry.name)[1].lower() in wanted:
                    errors[full] = describe_os_error(exc)
                continue
            if not stat.S_ISREG(info.st_mode):
                errors[full] = "not a regular file"
                continue
            files[full] = (info.st_size, info.st_mtime)
            if found := [name for name in metadata.sidecar_names(full) if os.path.basename(name) in xmp_names]:
                sidecars[full] = metadata.sidecar_stats(found)
    return ScanResult(files, errors, skipped, sidecars)


def own_folders() -> list[str]:
    """tagsite's media (thumbnails, uploads) and var folders: never imported as images."""
    return [os.path.realpath(settings.MEDIA_ROOT), os.path.realpath(settings.VAR_DIR)]


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def refusal(real: str, roots: list[str] | None, own: list[str]) -> str:
    """Why a resolved path may not be walked or imported; empty when it may."""
    if any(_inside(real, folder) for folder in NEVER_WALKED):
        return f"leads into {real}, a system folder that is never imported"
    if not _inside(real, os.path.realpath(settings.IMPORT_DROP_DIR)) and any(_inside(real, f) for f in own):
        return f"leads into {real}, tagsite's own data folder (TAGSITE_VAR_DIR or TAGSITE_MEDIA_DIR)"
    if roots is not None and not any(_inside(real, folder) for folder in roots):
        return f"leads to {real}, outside the import folders (TAGSITE_IMPORT_ROOTS)"
    return ""


def check_import_folder(path: str, roots: Iterable[str] | None = None) -> str:
    """The absolute folder to import, or ImportRefused saying why not. `roots` None: any folder (the command line)."""
    if not path or "\x00" in path:
        raise ImportRefused("give the absolute path of a folder on the server")
    if not os.path.isabs(path):
        raise ImportRefused(f"{path!r} is a relative path: give the absolute path of a folder on the server")
    path = os.path.abspath(path)
    if any(_inside(path, folder) for folder in NEVER_WALKED):  # as given: /proc/self/root/... resolves elsewhere
        raise ImportRefused(f"{path!r} is inside a system folder that is never imported")
    if not os.path.isdir(path):
        raise ImportRefused(f"{path!r} is not a folder" + ("" if os.path.exists(path) else " (it does not exist)"))
    allowed = [os.path.realpath(folder) for folder in roots] if roots is not None else None
    if why := refusal(os.path.realpath(path), allowed, own_folders()):
        allowed_list = ", ".join(allowed or [])
        raise ImportRefused(f"{path!r} {why}" + (f"; allowed: {allowed_list}" if allowed is not None else ""))
    return path


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file read in 1 MiB blocks (an image's identity; a model file's check)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def describe_os_error(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno == errno.ENOENT:
        return "broken symlink (target does not exist)"
    if exc.errno == errno.EACCES:
        return "permission denied"
    return f"cannot read: {exc.strerror or exc}"


def inspect_file(path: str) -> FileFacts:
    """Hash, decode and thumbnail one file. Never raises: problems end up in `error`."""
    facts = FileFacts(path)
    try:
        _inspect(facts)
    except Exception as exc:  # noqa: BLE001 - whatever goes wrong with one file is that file's failure
        logger.warning("unexpected error reading %r", path, exc_info=True)
        facts.error = unexpected_error(exc)
    return facts


def unexpected_error(exc: Exception) -> str:
    """A sentence for the job page; the traceback is in the log."""
    return f"could not be read because of an unexpected error ({exc or type(exc).__name__}); the log has the details"


def _inspect(facts: FileFacts) -> None:
    try:
        info = os.stat(facts.path)
        facts.size, facts.mtime = info.st_size, info.st_mtime
        if not stat.S_ISREG(info.st_mode):
            facts.error = "not a regular file"
            return
        if info.st_size == 0:
            facts.error = "empty file (0 bytes)"
            return
        with open(facts.path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        facts.error = describe_os_error(exc)
        return
    facts.sha256 = hashlib.sha256(data).hexdigest()
    try:
        decoded = imaging.open_image(
            io.BytesIO(data), max_pixels=settings.MAX_IMAGE_PIXELS, draft_size=settings.THUMBNAIL_SIZE
        )
    except imaging.ImageDecodeError as exc:
        facts.error = str(exc)
        return
    facts.format = decoded.format
    facts.width, facts.height = decoded.width, decoded.height
    facts.orientation, facts.frames = decoded.orientation, decoded.frames
    facts.may_have_keywords = decoded.may_have_keywords
    facts.thumbnail = ensure_thumbnail(facts.sha256, decoded.image)


def ensure_thumbnail(sha256: str, image) -> str:
    """Thumbnails are keyed by content, so they are made once, whatever the path."""
    relative = f"thumbs/{sha256[:2]}/{sha256}.jpg"
    target = Path(settings.MEDIA_ROOT) / relative
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(imaging.thumbnail_jpeg(image, settings.THUMBNAIL_SIZE))
        partial.replace(target)
    return relative


def inspect_chunk(paths: list[str]) -> list[FileFacts]:
    """Inspect files and read their existing keywords, and their XMP sidecars', with one ExifTool round trip.

    Files without any XMP or IPTC block skip ExifTool: that Perl round trip would cost more
    than the decode.
    """
    facts = [_guarded_inspect(path) for path in paths]
    sidecars = {f.path: metadata.sidecars_of(f.path) for f in facts}  # darktable's or Adobe's
    stats = {path: metadata.sidecar_stats(found) for path, found in sidecars.items()}  # before reading them
    readable = [f.path for f in facts if not f.error and f.may_have_keywords]
    readable += [sidecar for f in facts if not f.error for sidecar in sidecars[f.path]]
    try:
        keywords = metadata.read_keywords(readable) if readable else {}
    except Exception as exc:  # noqa: BLE001 - these files' keywords would be lost silently: fail them, loudly
        logger.warning("reading keywords failed for %d files", len(readable), exc_info=True)
        keywords = {}
        for f in facts:
            if f.path in readable:
                f.error = f"its keywords could not be read ({exc or type(exc).__name__}); the log has the details"
    for f in facts:
        f.sidecars = stats.get(f.path, {})
        found = [keywords.get(name, []) for name in [f.path, *sidecars.get(f.path, [])]]
        f.keywords = list(dict.fromkeys(word for words in found for word in words))
    return facts


def _guarded_inspect(path: str) -> FileFacts:
    """The import loop's own safety net: even a bug in the reader costs only this one file."""
    try:
        return inspect_file(path)
    except Exception as exc:  # noqa: BLE001
        logger.warning("unexpected error inspecting %r", path, exc_info=True)
        return FileFacts(path, error=unexpected_error(exc))


def import_folder(
    root: str | Path,
    progress: JobProgress | None = None,
    extensions=None,
    roots: Iterable[str] | None = None,
    recursive: bool = True,
) -> dict[str, int]:
    """Bring a folder (without `recursive`: only its own files, its subfolders untouched) in line with the
    library: new, changed, moved, deleted files. Returns counts.

    `roots` limits where the scan may go (the web's TAGSITE_IMPORT_ROOTS); None lets an operator's
    command import any folder. Files outside `extensions` are neither imported nor marked missing.
    """
    root = check_import_folder(os.path.abspath(str(root)), roots)
    wanted = tuple(ext.lower() for ext in (extensions or settings.IMAGE_EXTENSIONS))
    scan = scan_folder(root, wanted, roots, recursive)
    prefix = root.rstrip("/") + "/"
    known = {
        row.path: row
        for row in Image.objects.filter(path__startswith=prefix)
        if recursive or "/" not in row.path[len(prefix) :]
    }
    todo = sorted(
        path
        for path, (size, mtime) in scan.files.items()
        if path not in known
        or (known[path].size, known[path].mtime) != (size, mtime)
        or known[path].sidecars != scan.sidecars.get(path, {})  # a sidecar edited, added or removed
        or known[path].status == Image.Status.MISSING  # back where it was
    )
    hidden = tuple(folder.rstrip("/") + "/" for folder in scan.skipped_folders)
    gone = {
        path
        for path in known
        if path not in scan.files
        and path not in scan.errors
        and not path.startswith(hidden or ("\x00",))
        and path.lower().endswith(wanted)
    }
    counts = {"unchanged": len(scan.files) - len(todo)}
    if progress:
        progress.set_total(len(todo))
    for folder, why in scan.skipped_folders.items():
        if progress:
            progress.error(folder, f"folder skipped: {why}")
    for path, why in scan.errors.items():
        row = known.get(path)
        if row is None or row.status != Image.Status.FAILED or row.error != why:
            image, _ = _save(FileFacts(path, error=why), row, {}, gone, counts)
            record_stage(image, "ingest", ImageStage.Status.FAILED, why)
        if progress:
            progress.error(path, why)
    ingest_paths(todo, known, gone, counts, progress)
    missing = Image.objects.filter(path__in=gone).exclude(status=Image.Status.MISSING)
    counts["missing"] = missing.update(status=Image.Status.MISSING, error="file not found at the last scan")
    if progress:
        progress.job.counts.update(counts)
        progress.job.message = summarize_counts(counts)
        progress.save(force=True)
    return counts


def ingest_paths(
    paths: list[str],
    known: dict[str, Image] | None = None,
    gone: set[str] | None = None,
    counts: dict[str, int] | None = None,
    progress: JobProgress | None = None,
    user=None,
) -> list[Image]:
    """Inspect files on all cores (decoding releases the GIL) and save them chunk by chunk."""
    known = known if known is not None else {row.path: row for row in Image.objects.filter(path__in=paths)}
    gone = gone if gone is not None else set()
    counts = counts if counts is not None else {}
    chunks = [paths[i : i + CHUNK_SIZE] for i in range(0, len(paths), CHUNK_SIZE)]
    saved: list[Image] = []
    changed_ids: list[int] = []
    pool = ThreadPoolExecutor(max_workers=settings.INGEST_THREADS)
    try:
        for facts in pool.map(inspect_chunk, chunks):
            twins = _images_by_content([f.sha256 for f in facts if f.sha256])
            outcomes, chunk_changed = [], []
            with transaction.atomic():
                for f in facts:
                    image, content_changed = _save_guarded(f, known.get(f.path), twins, gone, counts, user)
                    outcomes.append((image, ImageStage.Status.FAILED if f.error else ImageStage.Status.DONE, f.error))
                    saved.append(image)
                    if content_changed:
                        chunk_changed.append(image.pk)
                record_stages("ingest", outcomes)
            changed_ids += chunk_changed
            if progress:  # once the chunk is committed: a cancelled job stops between chunks
                for f in facts:
                    if f.error:
                        progress.error(f.path, f.error)
                progress.advance(len(facts))
    finally:  # cancelled or stopped: decode no further chunk, and announce what was saved
        pool.shutdown(cancel_futures=True)
        if changed_ids:
            images_ingested.send(sender=Image, image_ids=changed_ids)
    return saved


def _save_guarded(
    f: FileFacts, row: Image | None, twins: dict[str, Image], gone: set[str], counts: dict[str, int], user=None
) -> tuple[Image, bool]:
    """Save one file in a savepoint; if that fails (a keyword the database refuses...), record the file failed."""
    before = dict(counts)
    try:
        with transaction.atomic():
            return _save(f, row, twins, gone, counts, user)
    except Exception as exc:  # noqa: BLE001 - one file's failure, never the chunk's
        logger.warning("saving %r failed", f.path, exc_info=True)
        counts.clear()
        counts.update(before)
        if f.sha256 in twins and twins[f.sha256].path == f.path:
            del twins[f.sha256]  # its row was rolled back
        f.error, f.keywords, f.thumbnail = unexpected_error(exc), [], ""
        return _save(f, Image.objects.filter(path=f.path).first(), twins, gone, counts, user)


def _images_by_content(hashes: list[str]) -> dict[str, Image]:
    """Present or missing images with these hashes (a present one wins), to spot moves and duplicates."""
    rows = Image.objects.filter(sha256__in=hashes, status__in=[Image.Status.OK, Image.Status.MISSING])
    return {row.sha256: row for row in sorted(rows, key=lambda row: row.status == Image.Status.OK)}


def _save(
    f: FileFacts, row: Image | None, twins: dict[str, Image], gone: set[str], counts: dict[str, int], user=None
) -> tuple[Image, bool]:
    """Write one file's facts; returns the image and whether its content is new to the library."""
    fields = {
        "size": f.size,
        "mtime": f.mtime,
        "sha256": f.sha256,
        "format": f.format,
        "width": f.width,
        "height": f.height,
        "orientation": f.orientation,
        "frames": f.frames,
        "thumbnail": f.thumbnail,
        "sidecars": f.sidecars,
        "status": Image.Status.FAILED if f.error else Image.Status.OK,
        "error": f.error,
    }
    if f.error:
        kind = "failed"
    elif row is None:
        kind = "new"
    else:
        kind = "restored" if row.status == Image.Status.MISSING else "changed"
    content_changed = not f.error and (row is None or row.sha256 != f.sha256 or row.status != Image.Status.OK)
    if not f.error:
        twin = twins.get(f.sha256)
        if twin is not None and twin.path != f.path:
            if twin.path in gone or twin.status == Image.Status.MISSING or not os.path.exists(twin.path):
                if row is not None:
                    row.delete()
                gone.discard(twin.path)
                row, kind, content_changed = twin, "moved", False
                fields["path"] = f.path
            else:
                fields["status"] = Image.Status.DUPLICATE
                fields["error"] = f"same content as image #{twin.pk}: {twin.path}"
                kind, content_changed = "duplicate", False
    if row is None:
        row = Image(path=f.path, uploaded_by=user)
    for name, value in fields.items():
        setattr(row, name, value)
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError:  # another worker stored the same content a moment ago
        row.status, row.error = Image.Status.DUPLICATE, "same content as an image stored concurrently"
        row.save()
        kind, content_changed = "duplicate", False
    counts[kind] = counts.get(kind, 0) + 1
    if row.status == Image.Status.OK:
        twins[row.sha256] = row
    if f.keywords and row.status == Image.Status.OK:
        add_tags([row], f.keywords, source=ImageTag.Source.FILE)
    return row, content_changed


def record_stages(stage: str, outcomes: list[tuple[Image, str, str]]) -> None:
    """Upsert the (image, status, error) outcomes of one stage in a single query."""
    ImageStage.objects.bulk_create(
        [ImageStage(image=image, stage=stage, status=status, error=error) for image, status, error in outcomes],
        update_conflicts=True,
        unique_fields=["image", "stage"],
        update_fields=["status", "error", "updated_at"],
    )


def record_stage(image: Image, stage: str, status: str, error: str = "") -> None:
    record_stages(stage, [(image, status, error)])


class UploadRejected(ValueError):
    """An upload that is too large, of a type we do not take, or not a decodable image."""


def store_upload(upload, user=None) -> tuple[Image, bool]:
    """Check, store and ingest an uploaded file. Returns the image and whether it is new."""
    from django.utils import timezone
    from django.utils.text import get_valid_filename

    extension = Path(upload.name).suffix.lower()
    if extension not in settings.IMAGE_EXTENSIONS:
        allowed = ", ".join(settings.IMAGE_EXTENSIONS)
        raise UploadRejected(f"file type '{extension or 'none'}' is not accepted (allowed: {allowed})")
    if upload.size > settings.MAX_UPLOAD_BYTES:
        raise UploadRejected(f"file is {upload.size} bytes, over the limit of {settings.MAX_UPLOAD_BYTES}")
    data = b"".join(upload.chunks())
    if not data:
        raise UploadRejected("empty file (0 bytes)")
    sha256 = hashlib.sha256(data).hexdigest()
    existing = Image.objects.filter(sha256=sha256, status=Image.Status.OK).first()
    if existing is not None:
        return existing, False
    try:
        imaging.open_image(io.BytesIO(data), max_pixels=settings.MAX_IMAGE_PIXELS, draft_size=64)
    except imaging.ImageDecodeError as exc:
        raise UploadRejected(str(exc)) from exc
    try:
        safe_name = get_valid_filename(Path(upload.name).name)
    except Exception:  # noqa: BLE001 - a name of only odd characters
        safe_name = f"upload{extension}"
    folder = Path(settings.MEDIA_ROOT) / "uploads" / timezone.now().strftime("%Y/%m") / sha256[:12]
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / safe_name
    partial = target.with_name(target.name + ".part")
    partial.write_bytes(data)
    partial.replace(target)
    (image,) = ingest_paths([str(target)], user=user)
    return image, True
