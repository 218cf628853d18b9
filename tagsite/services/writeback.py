"""Writing what tagsite holds (tags, their categories) into the files, so other photo programs see it.

A write can never damage or lose a file: ExifTool writes a temporary copy in the file's own folder, the copy is
read back and every field compared (ExifTool does not fail on warnings), and only then renamed over the original,
atomically, in the database transaction that records the file's new size, mtime and hash (so a rescan does not
see a changed file). A file another program changed since import is refused. Work goes in batches: one ExifTool
round trip writes a batch and one reads it back, on every core.
"""

import functools
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import stat
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from tagsite import features, metadata
from tagsite.models import Image
from tagsite.services.ingest import file_sha256
from tagsite.services.jobs import JobProgress, describe_error
from tagsite.services.tags import normalize_tag_name

log = logging.getLogger(__name__)

REPLACE, APPEND = "replace", "append"
# What tagsite holds, by kind, and the file fields each kind is written to.
KEYWORDS, HIERARCHY, TITLE, DESCRIPTION = "keywords", "hierarchy", "title", "description"
FILE_FIELDS = {
    KEYWORDS: (metadata.SUBJECT, metadata.KEYWORDS),
    HIERARCHY: (metadata.HIERARCHY,),
    TITLE: (metadata.TITLE, metadata.OBJECT_NAME),
    DESCRIPTION: (metadata.DESCRIPTION, metadata.CAPTION, metadata.IMAGE_DESCRIPTION),
}
LISTS = (KEYWORDS, HIERARCHY)
TEMPORARY_MARK = ".tagsite-"  # temporary copies: `.photo.jpg.tagsite-<random>.tmp`


@dataclass
class WriteOptions:
    mode: str = REPLACE
    sidecar_only: bool = False
    overwrite: bool = False  # replace what the file carries even when that drops keywords or texts
    backup: bool = False
    dry_run: bool = False
    # With append: keywords (and hierarchy leaves) taken out of the file's lists first, compared as tags are; a
    # tag merge names the merged-away tags, so only they leave and everything else in the file stays.
    remove: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.mode not in (REPLACE, APPEND):
            raise ValueError(f"unknown mode {self.mode!r}: replace or append")


@dataclass
class FileResult:
    """What happened to one image's file; a line of the JSONL audit."""

    image_id: int
    path: str
    status: str = ""  # written, unchanged, skipped, failed, dry-run
    target: str = ""  # the file written: the image itself or its sidecar
    error: str = ""
    before: dict[str, list[str]] = field(default_factory=dict)
    after: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    fingerprint: str = ""
    temporary: str = ""
    sha256: str = ""
    checked: tuple[int, float] = (0, 0.0)  # the file's (size, mtime) when it was found to be the one imported
    sidecar: bool = False
    fallback: str = ""  # the field written instead of XMP (EXIF:UserComment) when the file's XMP could not be
    comment_is_ours: bool = False  # the file's UserComment holds tagsite's own last fallback

    def diff(self) -> dict[str, tuple[list[str], list[str]]]:
        """Field -> (before, after), only the fields that change."""
        return {
            name: (self.before.get(name, []), values)
            for name, values in self.after.items()
            if self.before.get(name, []) != values
        }

    def audit(self) -> dict:
        internal = ("temporary", "sha256", "checked", "comment_is_ours")
        record = {item.name: getattr(self, item.name) for item in fields(self) if item.name not in internal}
        record["changes"] = {name: {"before": old, "after": new} for name, (old, new) in self.diff().items()}
        return record


# What tagsite holds for an image


def tag_label(name: str, display_name: str) -> str:
    """How a tag is named in files: its display name or canonical name (a setting), underscores as spaces."""
    label = name if settings.METADATA_TAG_NAMES == "canonical" else display_name
    return label.replace("_", " ") if settings.METADATA_UNDERSCORES_TO_SPACES else label


def held_fields(image_ids: Iterable[int]) -> dict[int, dict[str, list[str]]]:
    """Per image, what tagsite holds to write: its tags (every ImageTag is approved data) and their parents, and its
    approved title and description (the caption where it has no description). Texts are held only when there are
    some, so images without texts keep the fingerprint they were written with."""
    rows = Image.tags.through.objects.filter(image_id__in=list(image_ids)).values_list(
        "image_id", "tag_id", "tag__name", "tag__display_name"
    )
    by_image: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for image_id, tag_id, name, display_name in rows:
        by_image[image_id].append((tag_id, tag_label(name, display_name)))
    parents = features.tag_parents(list({tag_id for tags in by_image.values() for tag_id, _ in tags}))
    held = {}
    for image_id in image_ids:
        tags = sorted(by_image.get(image_id, []), key=lambda item: item[1].casefold())
        held[image_id] = {
            KEYWORDS: [label for _, label in tags],
            HIERARCHY: [f"{parents[tag_id]}|{label.replace('|', '/')}" for tag_id, label in tags if tag_id in parents],
        }
    for image_id, title, caption, description in Image.objects.filter(pk__in=list(held)).values_list(
        "pk", "title", "caption", "description"
    ):
        if title:
            held[image_id][TITLE] = [title]
        if description or caption:
            held[image_id][DESCRIPTION] = [description or caption]
    return held


def fingerprint(held: dict[str, list[str]]) -> str:
    return hashlib.sha256(json.dumps(held, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def dirty_ids(images: Iterable[Image]) -> list[int]:
    """Images whose tags or texts changed since they were last written (never written and holding something)."""
    images = list(images)
    held = held_fields([image.pk for image in images])
    return [
        image.pk
        for image in images
        if fingerprint(held[image.pk]) != image.metadata_fingerprint
        and (image.metadata_fingerprint or any(held[image.pk].values()))
    ]


def all_dirty_ids(chunk: int = 2000) -> list[int]:
    """Every dirty image of the library, read in chunks of `chunk` images."""
    found: list[int] = []
    rows = Image.objects.filter(status=Image.Status.OK).only("pk", "metadata_fingerprint").order_by("pk")
    last = 0
    while batch := list(rows.filter(pk__gt=last)[:chunk]):
        found += dirty_ids(batch)
        last = batch[-1].pk
    return found


# From what the file has and what tagsite holds to what the file will have


@functools.lru_cache(maxsize=65536)
def key(value: str) -> str:
    """Two keywords are the same when tagsite would read them as the same tag (case, `_`, spaces). Cached: a run
    compares the same few thousand keywords for every file, several times each."""
    return normalize_tag_name(value) or value.casefold()


def merge(existing: list[str], held: list[str]) -> list[str]:
    """The file's keywords, then tagsite's that the file lacks, compared case-insensitively (never ExifTool's
    case-sensitive `+=`)."""
    seen = {key(value) for value in existing}
    merged = list(existing)
    for value in held:
        if key(value) not in seen:
            seen.add(key(value))
            merged.append(value)
    return merged


def cut_bytes(value: str, limit: int) -> str:
    """At most `limit` UTF-8 bytes, cut on a character boundary."""
    encoded = value.encode()
    return value if len(encoded) <= limit else encoded[:limit].decode(errors="ignore")


def file_values(
    current: dict[str, list[str]],
    held: dict[str, list[str]],
    fields: tuple[str, ...],
    mode: str,
    remove: frozenset[str] = frozenset(),
):
    """The values to write to each of `fields`, and notes on what was cut; `current` is what the file has.
    `remove` (keys): in append mode, the file's keywords and hierarchy leaves with these keys are left out."""
    values: dict[str, list[str]] = {}
    notes: list[str] = []
    for kind, names in FILE_FIELDS.items():
        if kind not in held or (kind not in LISTS and not held[kind]):
            continue  # tagsite holds no title or description: the file's stay as they are
        for name in names:
            if name not in fields:
                continue
            wanted = [metadata.one_line(value) for value in held[kind]]
            have = current.get(name, [])
            if kind in LISTS and mode == APPEND:
                leaf = (lambda value: value.rsplit("|", 1)[-1]) if kind == HIERARCHY else (lambda value: value)
                kept = [value for value in have if key(leaf(value)) not in remove]
                wanted = merge(kept, wanted)
            elif kind in LISTS and sorted(map(key, have)) == sorted(map(key, wanted)):
                wanted = have  # the same keywords in another order or case: nothing to write
            if limit := metadata.IPTC_LIMITS.get(name):
                cut = [cut_bytes(value, limit) for value in wanted]
                pairs = zip(wanted, cut, strict=True)
                notes += [f"{name} cut to {limit} bytes: {old!r} -> {new!r}" for old, new in pairs if old != new]
                wanted = merge([], cut) if kind in LISTS else cut
            values[name] = wanted
    return values, notes


def dropped(current: dict[str, list[str]], values: dict[str, list[str]]) -> list[str]:
    """What a replace would remove from the file: keywords it carries that tagsite does not hold, other texts."""
    lost = []
    for name, new in values.items():
        kept = {key(value) for value in new}
        lost += [f"{name}: {value}" for value in current.get(name, []) if key(value) not in kept]
    return lost


# Where to write


def sidecar_path(path: str) -> str:
    """`photo.jpg.xmp` (darktable, digiKam) or `photo.xmp` (Adobe, Lightroom): a setting."""
    if settings.METADATA_SIDECAR_NAMING == "adobe":
        return str(Path(path).with_suffix(".xmp"))
    return f"{path}.xmp"


def writable(path: str) -> bool:
    """Write permission, by the mode bits too: root may write anything, but a read-only file says 'leave me'."""
    try:
        info = os.stat(path)
    except OSError:
        return False
    return os.access(path, os.W_OK) and bool(info.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def choose_target(real: str, options: WriteOptions) -> tuple[str, bool]:
    """The file to write (the image or its sidecar) and whether it is a sidecar; raises ValueError with the
    reason when neither can be written."""
    folder = os.path.dirname(real)
    if not writable(folder):
        raise ValueError(f"no write permission in the folder {folder}: neither the file nor a sidecar can be written")
    in_place = bool(metadata.fields_for(real)) and not (options.sidecar_only or settings.METADATA_SIDECAR_ONLY)
    if in_place and writable(real):
        return real, False
    if not settings.METADATA_SIDECARS:
        why = "the file is read-only" if in_place else "ExifTool cannot write this format in place"
        raise ValueError(f"{why} and sidecars are off (TAGSITE_METADATA_SIDECARS)")
    return sidecar_path(real), True


def changed_since_import(image: Image, real: str) -> tuple[str, tuple[int, float]]:
    """Why the file is not the one tagsite imported (size, content), or '', and its (size, mtime) as checked.
    Size and mtime as recorded mean the file is unchanged, as a rescan judges it; only a file whose mtime moved is
    hashed: one only touched (new mtime, same bytes) is still the one imported."""
    info = os.stat(real)
    if (info.st_size, info.st_mtime) == (image.size, image.mtime):
        return "", (info.st_size, info.st_mtime)
    if info.st_size != image.size or file_sha256(real) != image.sha256:
        return "changed by another program since it was imported; import it again, then write", (0, 0.0)
    return "", (info.st_size, info.st_mtime)


LEFTOVER = re.compile(r"\..+" + re.escape(TEMPORARY_MARK) + r"[0-9a-f]{8}\.(tmp|xmp)")
LEFTOVER_AGE = 3600  # seconds: a younger temporary copy may be another run's, in progress


def remove_leftovers(folder: str) -> int:
    """Delete temporary copies a killed run left in a folder (an hour old or more); returns how many."""
    removed = 0
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if LEFTOVER.fullmatch(entry.name) and time.time() - entry.stat().st_mtime > LEFTOVER_AGE:
                    os.unlink(entry.path)
                    removed += 1
    except OSError as exc:
        log.warning("could not clear leftover temporary copies in %s: %s", folder, exc)
    if removed:
        log.info("removed %d temporary copies a stopped run left in %s", removed, folder)
    return removed


def temporary_name(target: str) -> str:
    """Hidden, beside the target, ending `.tmp`: ExifTool then copies the source's format (named `x.webp` it would
    try to create a WebP from nothing, and refuse). A new sidecar's ends `.xmp`, the type ExifTool creates."""
    folder, name = os.path.split(target)
    suffix = ".xmp" if name.lower().endswith(".xmp") else ".tmp"
    return os.path.join(folder, f".{name}{TEMPORARY_MARK}{secrets.token_hex(4)}{suffix}")


# One batch: prepare (checks, plan, temporary copies written and verified) in a thread, then commit


def prepare_batch(images: list[Image], held: dict[int, dict], options: WriteOptions) -> list[FileResult]:
    """`prepare` behind a net: ExifTool missing or dead fails this batch's files with the reason, not the run."""
    results: list[FileResult] = []
    try:
        return prepare(images, held, options, results)
    except Exception as exc:  # noqa: BLE001 - the batch's failure, recorded per file; the run goes on
        log.warning("metadata batch of %d files failed", len(images), exc_info=True)
        metadata.stop()
        done = {result.image_id: result for result in results}
        failed = []
        for image in images:
            result = done.get(image.pk) or FileResult(image.pk, image.path)
            if result.status != "failed":
                fail(result, f"ExifTool failed, the file was not touched: {describe_error(exc)}")
            failed.append(result)
        return failed


def prepare(images: list[Image], held: dict[int, dict], options: WriteOptions, results: list) -> list[FileResult]:
    """Check, plan, write temporary copies with one ExifTool round trip and verify them with one read."""
    plans = []
    for image in images:
        result = FileResult(image.pk, image.path, fingerprint=fingerprint(held[image.pk]))
        result.comment_is_ours = image.metadata_fallback == metadata.WRITE_NAMES[metadata.USER_COMMENT]
        results.append(result)
        try:
            real = os.path.realpath(image.path)  # a symlink stays a symlink: the file it points to is written
            if not os.path.isfile(real):
                raise ValueError("the file is missing (moved or deleted since import)")
            why, result.checked = changed_since_import(image, real)
            if why:
                raise ValueError(why)
            result.target, result.sidecar = choose_target(real, options)
            plans.append((result, real))
        except (OSError, ValueError) as exc:
            result.status, result.error = "failed", describe_error(exc)
    sources = {res.image_id: res.target if os.path.exists(res.target) else real for res, real in plans}
    current = metadata.read_fields(list(set(sources.values())))
    pending, comments = [], {}
    remove = frozenset(key(value) for value in options.remove)
    for result, _ in plans:
        fields = metadata.fields_for(result.target)
        have = current.get(sources[result.image_id], {})
        comments[result.image_id] = have.get(metadata.USER_COMMENT, [])
        result.before = {name: have.get(name, []) for name in fields}
        result.after, result.notes = file_values(result.before, held[result.image_id], fields, options.mode, remove)
        result.before = {name: result.before[name] for name in result.after}
        if not result.diff():
            result.status = "unchanged"
            continue
        if options.mode == REPLACE and not options.overwrite and (lost := dropped(result.before, result.after)):
            result.status = "skipped"
            result.error = (
                f"the file carries metadata a replace would drop ({'; '.join(lost[:5])}"
                f"{' ...' if len(lost) > 5 else ''}); use append, or overwrite"
            )
            continue
        if options.dry_run:
            result.status = "dry-run"
            continue
        pending.append(result)
    refused = write_copies(pending)
    if refused:
        fall_back(refused, comments, options)
    for result in pending:
        if result.temporary:
            try:
                finish_copy(result, options)
            except OSError as exc:
                fail(result, describe_error(exc))
    return results


def write_copies(pending: list[FileResult]) -> list[tuple[FileResult, str]]:
    """Write each file's temporary copy (one ExifTool round trip) and read the copies back (one more). A copy
    that fails is discarded and its file failed, except a JPEG or TIFF whose XMP alone failed: every other field
    read back as written and an XMP field did not. (With `-m`, ExifTool's XMP errors are warnings, so the read-back
    is what tells.) Those come back with the reason, for the EXIF:UserComment fallback."""
    commands = []
    for result in pending:
        result.temporary = temporary_name(result.target)
        source = result.target if os.path.exists(result.target) else None  # None: a new sidecar
        commands.append(metadata.WriteCommand(result.temporary, result.after, source))
    refused, written = [], []
    for result, error in zip(pending, metadata.write(commands), strict=True):
        if not error and os.path.exists(result.temporary):
            written.append(result)
        else:
            fail(result, f"ExifTool could not write it: {error or 'no file came out'}")
    found = metadata.read_fields([result.temporary for result in written])
    for result in written:
        copy = found.get(result.temporary, {})
        try:
            verify(result, copy)
        except ValueError as exc:
            wrong = [name for name, values in result.after.items() if copy.get(name, []) != values]
            if copy and set(wrong) <= set(metadata.XMP) and can_fall_back(result):
                discard(result)
                refused.append((result, f"{', '.join(wrong)} did not take the new values"))
            else:
                fail(result, describe_error(exc))
    return refused


def can_fall_back(result: FileResult) -> bool:
    """JPEG and TIFF written in place hold EXIF, where seed 001 puts the keywords when XMP fails."""
    in_place = not result.sidecar and Path(result.target).suffix.lower() in metadata.USER_COMMENT_FORMATS
    return in_place and any(name in metadata.XMP for name in result.after)


def user_comment(values: dict[str, list[str]]) -> str:
    """The fallback's text: the keywords as one comma-separated list (seed 001's), after the title and
    description when tagsite holds them."""
    keywords = ", ".join(values.get(metadata.SUBJECT, []))
    texts = [f"Title: {title}" for title in values.get(metadata.TITLE, [])]
    texts += [f"Description: {text}" for text in values.get(metadata.DESCRIPTION, [])]
    return "; ".join([*texts, f"Keywords: {keywords}"]) if texts else keywords


def fall_back(refused: list[tuple[FileResult, str]], comments: dict[int, list[str]], options: WriteOptions) -> None:
    """A JPEG or TIFF whose XMP cannot be written (a broken XMP block ExifTool will not rewrite) gets its other
    fields and the keywords in EXIF:UserComment, written and read back the same way; its XMP stays as it was.
    Text already in UserComment that is not tagsite's is replaced only with `overwrite`."""
    field_name = metadata.WRITE_NAMES[metadata.USER_COMMENT]
    retry, reasons = [], {}
    for result, why in refused:
        comment = user_comment(result.after)
        had = " ".join(comments[result.image_id]).strip()
        if had and had != comment and not (options.overwrite or result.comment_is_ours):
            why = f"its XMP cannot be written ({why}) and {field_name} holds other text ({had[:80]!r})"
            fail(result, f"{why}; overwrite replaces it")
            continue
        result.after = {name: values for name, values in result.after.items() if name not in metadata.XMP}
        result.after[metadata.USER_COMMENT] = [comment]
        result.before = {name: result.before.get(name, []) for name in result.after}
        result.before[metadata.USER_COMMENT] = comments[result.image_id]
        result.fallback = field_name
        result.notes.append(f"its XMP cannot be written ({why}): the keywords went to {field_name} instead")
        if not result.diff():
            result.status = "unchanged"
        else:
            retry.append(result)
            reasons[result.image_id] = why
    for result, why in write_copies(retry):
        fail(result, why)
    for result in retry:
        if result.status == "failed":
            result.error = f"its XMP cannot be written ({reasons[result.image_id]}), nor {field_name}: {result.error}"


def verify(result: FileResult, found: dict[str, list[str]]) -> None:
    """Every field meant to change reads back as meant; ExifTool reports success on some failures."""
    if not found:
        raise ValueError("the written copy could not be read back")
    for name, values in result.after.items():
        if found.get(name, []) != values:
            raise ValueError(f"{name} read back differs from what was written: {found.get(name, [])[:5]} ...")


def finish_copy(result: FileResult, options: WriteOptions) -> None:
    """Give the verified copy the original's permissions, hash it, put it on disk, and back the original up."""
    if os.path.exists(result.target):
        shutil.copymode(result.target, result.temporary)
        if options.backup:
            backup(result.target)
    with open(result.temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    result.sha256 = file_sha256(result.temporary)


def backup(path: str) -> str:
    """A copy under var/metadata/backups/<date>/<the file's absolute path>, never beside the file."""
    target = Path(settings.METADATA_DIR) / "backups" / timezone.now().strftime("%Y%m%d") / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target = target.with_name(f"{target.name}.{timezone.now().strftime('%H%M%S%f')}")
    shutil.copy2(path, target)
    return str(target)


def fail(result: FileResult, error: str) -> None:
    result.status, result.error = "failed", error
    discard(result)


def discard(result: FileResult) -> None:
    if result.temporary:
        try:
            os.unlink(result.temporary)
        except FileNotFoundError:
            pass
        result.temporary = ""


def commit(result: FileResult) -> None:
    """Rename the verified copy over the file inside the transaction that records the file's new facts."""
    state = {
        "metadata_fingerprint": result.fingerprint,
        "metadata_written_at": timezone.now(),
        "metadata_fallback": result.fallback,
    }
    try:
        with transaction.atomic():
            if result.status == "unchanged":
                Image.objects.filter(pk=result.image_id).update(**state)
                return
            if not result.sidecar:
                now_there = os.stat(result.target)
                if (now_there.st_size, now_there.st_mtime) != result.checked:
                    raise ValueError("changed by another program while tagsite wrote it; import it again, then write")
            os.replace(result.temporary, result.target)
            result.temporary = ""
            if result.sidecar:  # what a rescan compares: it need not read back what tagsite wrote
                state["sidecars"] = metadata.sidecar_stats(metadata.sidecars_of(result.path))
            else:
                info = os.stat(result.target)
                state |= {"size": info.st_size, "mtime": info.st_mtime, "sha256": result.sha256}
            Image.objects.filter(pk=result.image_id).update(**state)
        result.status = "written"
    except (OSError, ValueError) as exc:
        fail(result, describe_error(exc))


# A run: batches on every core, an audit per run


SUMMARY_LINES = 500


class Audit:
    """A JSONL record per file and a Markdown summary per run, under var/metadata/<run>/."""

    def __init__(self, run: str, options: WriteOptions):
        self.folder = Path(settings.METADATA_DIR) / run
        self.folder.mkdir(parents=True, exist_ok=True)
        self.options = options
        self.jsonl = open(self.folder / "audit.jsonl", "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.counts: Counter = Counter()
        self.folders: dict[str, Counter] = defaultdict(Counter)
        self.failures: list[str] = []  # the first SUMMARY_LINES of each, for the summary
        self.highlights: list[str] = []

    def record(self, result: FileResult) -> None:
        self.jsonl.write(json.dumps(result.audit(), ensure_ascii=False) + "\n")
        self.counts[result.status] += 1
        self.folders[os.path.dirname(result.path)][result.status] += 1
        if result.status in ("failed", "skipped") and len(self.failures) < SUMMARY_LINES:
            self.failures.append(f"{result.path or f'image #{result.image_id}'}: {result.error}")
        notes = [*result.notes, *([f"written to the sidecar {result.target}"] if result.sidecar else [])]
        if result.status in ("written", "dry-run") and len(self.highlights) < SUMMARY_LINES:
            self.highlights += [f"{result.path}: {note}" for note in notes]

    def close(self) -> str:
        self.jsonl.close()
        mode = f"{self.options.mode}{', dry run' if self.options.dry_run else ''}"
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.counts.items())) or "nothing to write"
        lines = [f"# Metadata write ({mode})", "", counts, ""]
        lines += ["## Per folder", "", "| folder | " + " | ".join(sorted(self.counts)) + " |"]
        lines.append("|---" * (len(self.counts) + 1) + "|")
        for folder, counts in sorted(self.folders.items()):
            lines.append(f"| {folder} | " + " | ".join(str(counts[s]) for s in sorted(self.counts)) + " |")
        if self.failures:
            lines += ["", "## Failed or skipped", ""] + [f"- {line}" for line in self.failures]
        if self.highlights:
            lines += ["", "## Highlights (IPTC cuts, sidecars)", ""] + [f"- {line}" for line in self.highlights]
        if self.counts.get("failed", 0) + self.counts.get("skipped", 0) > len(self.failures):
            lines += ["", f"Only the first {SUMMARY_LINES} failures are listed; audit.jsonl has every file."]
        (self.folder / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return str(self.folder)


def audit_folder(job_id: int) -> Path:
    return Path(settings.METADATA_DIR) / f"job-{job_id}"


def write_images(
    image_ids: Iterable[int],
    options: WriteOptions,
    progress: JobProgress | None = None,
    run: str | None = None,
    on_result=None,
) -> dict[str, int]:
    """Write the images' files (or sidecars) in batches on every core; returns counts by status.

    `run` names the audit folder (a job's: `job-<id>`); `on_result(result)` sees each file's outcome.
    """
    ids = list(dict.fromkeys(int(pk) for pk in image_ids))
    run = run or f"run-{timezone.now().strftime('%Y%m%d-%H%M%S-%f')}"
    audit = Audit(run, options)
    if progress:
        progress.set_total(len(ids))
    batch = max(settings.METADATA_BATCH_SIZE, 1)
    threads = max(settings.METADATA_WRITE_THREADS, 1)
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="writeback")
    futures, current, cleared = [], [], set()
    try:
        for start in range(0, len(ids), batch * threads):
            chunk = ids[start : start + batch * threads]
            images = {image.pk: image for image in Image.objects.filter(pk__in=chunk)}
            for pk in chunk:
                image = images.get(pk)
                if image is None or image.status != Image.Status.OK:
                    why = "no such image" if image is None else f"not written: the image is {image.status}"
                    finish(
                        FileResult(pk, image.path if image else "", status="failed", error=why),
                        audit,
                        progress,
                        on_result,
                    )
            present = [images[pk] for pk in chunk if pk in images and images[pk].status == Image.Status.OK]
            for folder in {os.path.dirname(os.path.realpath(image.path)) for image in present} - cleared:
                remove_leftovers(folder)
                cleared.add(folder)
            held = held_fields([image.pk for image in present])
            futures = [
                pool.submit(prepare_batch, present[i : i + batch], held, options) for i in range(0, len(present), batch)
            ]
            while futures:
                current = futures.pop(0).result()
                for result in current:
                    if result.status == "unchanged" and not options.dry_run or result.temporary:
                        commit(result)
                    finish(result, audit, progress, on_result)
    finally:  # cancelled or stopped: no temporary copy stays behind (a committed result has none)
        for result in current:
            discard(result)
        for future in futures:
            for result in future.result():
                discard(result)
        stop_exiftools(pool, threads)
        pool.shutdown()
        audit.close()
    return dict(audit.counts)


def stop_exiftools(pool: ThreadPoolExecutor, threads: int) -> None:
    """Every writer thread stops its ExifTool processes now, not whenever its thread is collected: a barrier
    hands one stop to each thread."""
    barrier = threading.Barrier(threads)

    def stop() -> None:
        try:
            barrier.wait(timeout=30)
        except threading.BrokenBarrierError:
            log.warning("a writer thread did not take its ExifTool stop in time")
        metadata.stop()

    for future in [pool.submit(stop) for _ in range(threads)]:
        future.result()


def finish(result: FileResult, audit: Audit, progress: JobProgress | None, on_result) -> None:
    audit.record(result)
    if on_result:
        on_result(result)
    if progress:
        if result.error:
            progress.error(result.path or f"image #{result.image_id}", result.error)
        progress.advance(1, **{result.status.replace("-", "_"): 1}, **({"fallback": 1} if result.fallback else {}))


# Which images a run writes, and a run as a job


WRITE_ADVICE = (
    "The files listed were not written; each has its reason, and none was changed. Files changed by another "
    "program: import the folder again, then write. The run's audit (JSONL and Markdown) is on the job's page."
)


def select_images(ids: Iterable[int] = (), query: str = "", folder: str = "", all_dirty: bool = False) -> list[int]:
    """Image ids from explicit ids, a search query (`tag -other ~maybe`), a folder (and below), or every dirty
    image; several criteria add up. Raises ValueError when none is given."""
    from tagsite.services.tags import parse_query, search_images

    if not (ids or query or folder or all_dirty):
        raise ValueError("name images to write: ids, a search query, a folder, or all dirty images")
    selected = [int(pk) for pk in ids]
    if query:
        selected += list(search_images(*parse_query(query)).order_by("pk").values_list("pk", flat=True))
    if folder:
        prefix = os.path.join(os.path.abspath(folder), "")
        rows = Image.objects.filter(status=Image.Status.OK, path__startswith=prefix).order_by("pk")
        selected += list(rows.values_list("pk", flat=True))
    if all_dirty:
        selected += all_dirty_ids()
    return list(dict.fromkeys(selected))


def run_write_job(job, progress: JobProgress, on_result=None) -> dict[str, int]:
    """A job's run: its params hold the selection and the options; the audit goes to var/metadata/job-<id>/."""
    ids = select_images(**job.params.get("selection", {}))
    options = WriteOptions(**job.params.get("options", {}))
    return write_images(ids, options, progress, run=f"job-{job.pk}", on_result=on_result)


def preview(image: Image, mode: str = REPLACE) -> FileResult:
    """What a write would do to this image's file now, field by field (file -> tagsite), writing nothing."""
    return prepare_batch([image], held_fields([image.pk]), WriteOptions(mode=mode, dry_run=True))[0]


def start_write_job(selection: dict, options: dict | None = None, user=None, reason: str = ""):
    """Queue one write job (the `io` queue) for a selection; refuses bad options or an empty selection at once.
    `reason` says why a job nobody asked for runs (the auto-write's rule)."""
    from tagsite.services.jobs import start_job
    from tagsite.tasks import write_metadata_task

    options = asdict(WriteOptions(**(options or {})))
    if not any(selection.get(key) for key in ("ids", "query", "folder", "all_dirty")):
        raise ValueError("name images to write: ids, a search query, a folder, or all dirty images")
    params = {"selection": selection, "options": options} | ({"reason": reason} if reason else {})
    return start_job("write_metadata", write_metadata_task, params, user)


def write_after_approval(sender, kind: str, ids: list[int], status: str, user=None, rule=None, **kwargs) -> None:
    """TAGSITE_METADATA_AUTO_WRITE (off by default): approved proposals about images (tag suggestions) queue a
    write of those images (append: nothing in the files is dropped), logged with the rule that caused it."""
    from tagsite.models import Proposal

    if not settings.METADATA_AUTO_WRITE or status not in Proposal.APPLIED:
        return
    if "image" not in {field.name for field in sender._meta.get_fields()}:
        return  # proposals about tags, not images: their images turn dirty and wait for an explicit write
    image_ids = sorted(set(sender.objects.filter(pk__in=ids).values_list("image_id", flat=True)))
    if not image_ids:
        return
    who = f"rule {rule.name!r}" if rule is not None else f"{user or 'someone'}"
    reason = f"auto-write (TAGSITE_METADATA_AUTO_WRITE) after {len(ids)} {kind} {status} by {who}"
    job = start_write_job({"ids": image_ids}, {"mode": APPEND}, reason=reason)
    log.info("%s: job #%d writes %d images", reason, job.pk, len(image_ids))
