"""ExifTool, driven in `-stay_open` mode through pyexiftool: the one place tagsite touches file metadata."""

import logging
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

import exiftool

logger = logging.getLogger(__name__)

KEYWORD_TAGS = ("XMP-dc:Subject", "IPTC:Keywords")
# Control characters (a bell, an escape, a NUL in an IPTC record) separate words like a space does.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_local = threading.local()


class MetadataError(RuntimeError):
    pass


def exiftool_path() -> str:
    path = os.environ.get("EXIFTOOL_PATH") or shutil.which("exiftool")
    if not path:
        raise MetadataError("ExifTool is not installed (Debian: apt-get install libimage-exiftool-perl)")
    return path


def _helper() -> exiftool.ExifToolHelper:
    """One long-running exiftool per thread: starting Perl per file would dominate the cost.

    `-m` ignores minor errors, so a file with more than 1000 keywords gives all of them, not the first 1000.
    """
    helper = getattr(_local, "helper", None)
    if helper is None or not helper.running:
        helper = exiftool.ExifToolHelper(
            executable=exiftool_path(), common_args=["-G1", "-n", "-m", "-charset", "utf8"]
        )
        helper.run()
        _local.helper = helper
    return helper


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
    for record in _helper().get_tags(names, list(KEYWORD_TAGS)):
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
