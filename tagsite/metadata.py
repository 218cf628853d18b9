"""ExifTool, driven in `-stay_open` mode through pyexiftool: the one place tagsite touches file metadata."""

import json
import logging
import os
import re
import select
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import exiftool

logger = logging.getLogger(__name__)

KEYWORD_TAGS = ("XMP-dc:Subject", "IPTC:Keywords")
# Control characters (a bell, an escape, a NUL in an IPTC record) separate words like a space does.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_local = threading.local()


class MetadataError(RuntimeError):
    pass


def _read_until(fd: int, ending: bytes, block_size: int) -> bytes:
    """pyexiftool's pipe reader (PyExifTool 0.5.6, pinned), raising when ExifTool exits in the middle of a command.

    The library's own loops forever at end of file (select says readable, read returns nothing): a killed
    ExifTool held its writer thread at 100 % CPU and the write run never ended. Raised, the round trip fails,
    the thread's ExifTool is replaced and only that batch's files fail."""
    chunks, tail = [], b""
    while not tail.strip().endswith(ending):
        select.select([fd], [], [])
        chunk = os.read(fd, block_size)
        if not chunk:
            raise BrokenPipeError("ExifTool exited in the middle of a command")
        chunks.append(chunk)
        tail = (tail + chunk)[-(len(ending) + 4) :]
    return b"".join(chunks)


exiftool.exiftool._read_fd_endswith = _read_until


def exiftool_path() -> str:
    path = os.environ.get("EXIFTOOL_PATH") or shutil.which("exiftool")
    if not path:
        raise MetadataError("ExifTool is not installed (Debian: apt-get install libimage-exiftool-perl)")
    return path


def _helper() -> exiftool.ExifToolHelper:
    """One long-running exiftool per thread, for reading and writing: starting Perl costs about 170 ms of CPU,
    more than writing a file does.

    `-m` ignores minor errors, so a file with more than 1000 keywords gives all of them, not the first 1000.
    Reads add `-n` (raw values); writes add `-charset iptc=utf8` instead, so `CodedCharacterSet=UTF8` is converted.
    """
    helper = getattr(_local, "exiftool", None)
    if helper is None or not helper.running:
        helper = exiftool.ExifToolHelper(executable=exiftool_path(), common_args=["-G1", "-m", "-charset", "utf8"])
        helper.set_json_loads(_text_helper_loads)
        helper.run()
        _local.exiftool = helper
    return helper


READ = ["-n"]
WRITE = ["-charset", "iptc=utf8"]


def _safe_names(paths: list[str], workdir: Path) -> dict[str, str]:
    """ExifTool reads arguments line by line, so a name with a newline goes through a symlink."""
    names = {}
    for index, path in enumerate(paths):
        if "\n" in path or "\r" in path:
            link = workdir / f"file{index}{Path(path).suffix.replace(chr(10), '')}"
            link.symlink_to(os.path.abspath(path))
            names[path] = str(link)
        else:
            names[path] = path
    return names


def sidecar_names(path: str) -> list[str]:
    """Where a file's XMP sidecars may be: `photo.jpg.xmp` (darktable, digiKam) and `photo.xmp` (Adobe, Lightroom)."""
    stem = os.path.splitext(path)[0]
    return list(dict.fromkeys([f"{path}.xmp", f"{path}.XMP", f"{stem}.xmp", f"{stem}.XMP"]))


def sidecars_of(path: str) -> list[str]:
    """The XMP sidecars beside a file."""
    return [name for name in sidecar_names(path) if os.path.isfile(name)]


def sidecar_stats(sidecars: list[str]) -> dict[str, list[float]]:
    """Each sidecar's [size, mtime] (one that vanished is left out): a rescan compares them with what it read
    last, so keywords another program added to a sidecar come in."""
    stats = {}
    for sidecar in sidecars:
        try:
            info = os.stat(sidecar)
        except OSError:
            continue
        stats[sidecar] = [info.st_size, info.st_mtime]
    return stats


def read_keywords(paths: list[str]) -> dict[str, list[str]]:
    """Keywords already in the files (XMP-dc:Subject and IPTC:Keywords), merged without repeats.

    A file ExifTool cannot read maps to an empty list; one bad file never fails the batch.
    """
    if not paths:
        return {}
    with tempfile.TemporaryDirectory(prefix="tagsite-exif-") as workdir:
        names = _safe_names(paths, Path(workdir))
        try:
            results = _read(list(names.values()))
        except Exception:  # noqa: BLE001 - fall back to one file at a time to isolate the bad one
            logger.warning("ExifTool batch read failed; retrying file by file", exc_info=True)
            results = {}
            for name in names.values():
                try:
                    results.update(_read([name]))
                except Exception as exc:  # noqa: BLE001
                    logger.warning("ExifTool could not read %r: %s", name, exc)
        return {path: results.get(name, []) for path, name in names.items()}


def _read(names: list[str]) -> dict[str, list[str]]:
    found = {}
    for record in _helper().get_tags(names, list(KEYWORD_TAGS), params=READ):
        keywords: list[str] = []
        for tag in KEYWORD_TAGS:
            value = record.get(tag)
            values = value if isinstance(value, list) else [] if value is None else [value]
            for item in values:
                text = " ".join(CONTROL_CHARACTERS.sub(" ", str(item)).split())
                if text and text not in keywords:
                    keywords.append(text)
        found[record["SourceFile"]] = keywords
    return found


# Writing. The fields tagsite writes, by the names ExifTool reads them back under (`-G1`: EXIF's IFD0).
SUBJECT, KEYWORDS, HIERARCHY = "XMP-dc:Subject", "IPTC:Keywords", "XMP-lr:HierarchicalSubject"
TITLE, OBJECT_NAME = "XMP-dc:Title", "IPTC:ObjectName"
DESCRIPTION, CAPTION, IMAGE_DESCRIPTION = "XMP-dc:Description", "IPTC:Caption-Abstract", "IFD0:ImageDescription"
FIELDS = (SUBJECT, KEYWORDS, HIERARCHY, TITLE, OBJECT_NAME, DESCRIPTION, CAPTION, IMAGE_DESCRIPTION)
LIST_FIELDS = (SUBJECT, KEYWORDS, HIERARCHY)
# Seed 001's fallback for JPEG and TIFF when their XMP cannot be written: the keywords as one EXIF text.
USER_COMMENT = "ExifIFD:UserComment"
USER_COMMENT_FORMATS = (".jpg", ".jpeg", ".tif", ".tiff")
READ_FIELDS = (*FIELDS, USER_COMMENT)
# Where a field is written from (the group ExifTool writes it under): EXIF's ImageDescription lives in IFD0.
WRITE_NAMES = {IMAGE_DESCRIPTION: "EXIF:ImageDescription", USER_COMMENT: "EXIF:UserComment"}
# IPTC's record limits in bytes (IIM 4.2); ExifTool would cut them mid-character, so tagsite cuts first.
IPTC_LIMITS = {KEYWORDS: 64, OBJECT_NAME: 64, CAPTION: 2000}
# Which fields each format holds in the file itself; other formats (RAW, BMP, ...) get an XMP sidecar.
XMP = (SUBJECT, HIERARCHY, TITLE, DESCRIPTION)
IN_PLACE_FIELDS = {
    ".jpg": FIELDS,
    ".jpeg": FIELDS,
    ".tif": FIELDS,
    ".tiff": FIELDS,
    ".png": XMP,
    ".webp": XMP,
    ".gif": XMP,
    ".heic": XMP,
    ".heif": XMP,
}


def fields_for(path: str) -> tuple[str, ...]:
    """The fields a file of this name holds in place; empty: only a sidecar can carry them."""
    suffix = Path(path).suffix.lower()
    return XMP if suffix == ".xmp" else IN_PLACE_FIELDS.get(suffix, ())


def _as_list(value) -> list[str]:
    values = value if isinstance(value, list) else [] if value is None else [value]
    return [str(item) for item in values]


def read_fields(paths: list[str]) -> dict[str, dict[str, list[str]]]:
    """Every field tagsite writes (and EXIF:UserComment, its fallback), per file, as lists of strings.

    Values are read as text (`1.50` stays `1.50`); a file ExifTool cannot read maps to {} and
    never fails the batch.
    """
    if not paths:
        return {}
    with tempfile.TemporaryDirectory(prefix="tagsite-exif-") as workdir:
        names = _safe_names(paths, Path(workdir))
        helper = _helper()
        found: dict[str, dict[str, list[str]]] = {}
        fast = ["-fast2", *READ]  # these fields sit before the image data: no scan for trailers, no maker notes
        try:
            records = helper.get_tags(list(names.values()), list(READ_FIELDS), params=fast)
        except Exception:  # noqa: BLE001 - one unreadable file (or a dead ExifTool): read the others one by one
            records = []
            for name in names.values():
                try:
                    records += _helper().get_tags([name], list(READ_FIELDS), params=fast)
                except Exception as exc:  # noqa: BLE001
                    logger.warning("ExifTool could not read %r: %s", name, exc)
        for record in records:
            found[record["SourceFile"]] = {field: _as_list(record.get(field)) for field in READ_FIELDS}
        return {path: found.get(name, {}) for path, name in names.items()}


def _text_helper_loads(text, **kwargs):
    """JSON with numbers kept as text: a keyword `1.50` or `007` must read back as written."""
    return json.loads(text, parse_int=str, parse_float=str, **kwargs)


@dataclass
class WriteCommand:
    """Write `values` (field -> list; [] deletes the field) into `output`: a copy of `source`, or a new XMP
    sidecar when `source` is None. `output` must not exist; ExifTool creates it."""

    output: str
    values: dict[str, list[str]]
    source: str | None = None


def write(commands: list[WriteCommand]) -> list[str]:
    """Run every command in one ExifTool round trip; returns each command's error text ('' when none).

    ExifTool does not fail on warnings: the caller reads the outputs back, always.
    """
    if not commands:
        return []
    params: list[str] = []
    for index, command in enumerate(commands):
        params += [*WRITE, "-echo2", f"@@tagsite {index}@@"]  # to stderr before the command runs
        if _needs_utf8_iptc(command.values):
            params.append("-IPTC:CodedCharacterSet=UTF8")
        for field, values in command.values.items():
            name = WRITE_NAMES.get(field, field)
            params += [f"-{name}={one_line(value)}" for value in values] or [f"-{name}="]
        params += ["-o", _argument_path(command.output)]
        if command.source is not None:
            params.append(_argument_path(command.source))
        if index < len(commands) - 1:
            params.append("-execute")
    helper = _helper()
    try:
        helper.execute(*params)
    except exiftool.exceptions.ExifToolExecuteError:
        pass  # a command failed: its message is in stderr, read below
    except Exception as exc:  # noqa: BLE001 - a dead ExifTool fails every command of the round trip
        stop()
        return [f"ExifTool stopped: {exc or type(exc).__name__}"] * len(commands)
    return _split_errors(helper.last_stderr or "", len(commands))


def _needs_utf8_iptc(values: dict[str, list[str]]) -> bool:
    return any(field.startswith("IPTC:") for field in values)


def one_line(value: str) -> str:
    """ExifTool reads arguments line by line: a newline in a value would start a new argument, so control
    characters become spaces (and runs of spaces one), as they do when keywords are read."""
    return " ".join(CONTROL_CHARACTERS.sub(" ", value).split())


def _argument_path(path: str) -> str:
    if "\n" in path or "\r" in path:
        raise MetadataError(f"a file name with a line break cannot be written: {path!r}")
    return path


def _split_errors(stderr: str, count: int) -> list[str]:
    """ExifTool's messages per command, split at the markers each command echoed first; warnings dropped."""
    errors = [""] * count
    current = None
    for line in stderr.splitlines():
        marker = re.fullmatch(r"@@tagsite (\d+)@@", line.strip())
        if marker:
            current = int(marker.group(1))
        elif current is not None and line.strip() and not line.startswith("Warning"):
            errors[current] = f"{errors[current]} {line.strip()}".strip()
    return errors


def stop() -> None:
    """End this thread's ExifTool (after one died mid-batch: the next call starts a fresh one)."""
    helper = getattr(_local, "exiftool", None)
    if helper is not None:
        try:
            helper.terminate()
        except Exception:  # noqa: BLE001 - already dead
            logger.debug("ExifTool was already gone")
    _local.exiftool = None
