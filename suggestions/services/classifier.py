"""Seed 001's descriptive-rename classifier: per image a title, description, keywords and a file name from a VLM;
the image is copied to `<folder>/processed/<name>.<ext>` (verified by hash) beside `<name>.json`.

The model's file name is never trusted: it is folded to lower-case ASCII words joined by `-`, with no path
separators, no `..`, no leading dot, no reserved device name, at most 100 characters, and made unique (`-2`,
`-3`) by creating the files exclusively, so an existing file is never overwritten. An answer that tried to
escape is logged.
"""

import contextlib
import hashlib
import json
import logging
import os
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from suggestions.services.describe import StageFailed, ask_validated, clean_keywords, wrong_language
from tagsite.ai.base import ChatBackend, LLMError
from tagsite.ai.openai_compat import jpeg_bytes
from tagsite.imaging import ImageDecodeError, open_image
from tagsite.services.ingest import file_sha256
from tagsite.services.jobs import describe_error

log = logging.getLogger(__name__)
PROCESSED = "processed"
MAX_NAME = 100
RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
SYSTEM = (
    "You catalogue photos. Look at the image and answer in English with JSON only: a short specific title, a one "
    "or two sentence description, keywords, and a descriptive file name of 2 to 6 lower-case words joined by "
    "hyphens, without a folder or an extension."
)
CHUNK = 1 << 20


def classify_schema(max_keywords: int) -> dict:
    return {
        "type": "object",
        "properties": {
            "title": {"type": "string", "minLength": 2, "maxLength": 120},
            "description": {"type": "string", "minLength": 10, "maxLength": 1200},
            "keywords": {
                "type": "array",
                "items": {"type": "string", "minLength": 1, "maxLength": 64},
                "minItems": 1,
                "maxItems": max_keywords,
            },
            "filename": {"type": "string", "minLength": 1, "maxLength": 200},
        },
        "required": ["title", "description", "keywords", "filename"],
        "additionalProperties": False,
    }


def safe_filename(answer: str, fallback: str = "image") -> tuple[str, list[str]]:
    """A file name stem that cannot leave its folder, hide, or name a device, from whatever the model said; and
    notes on what was changed that a person should know (an escape attempt)."""
    answer = answer if isinstance(answer, str) else ""
    notes = []
    if any(mark in answer for mark in ("/", "\\", "\x00", "..")) or answer.lstrip().startswith(("~", ".")):
        notes.append(f"the model's file name {answer[:120]!r} tried to leave the folder or hide: sanitised")
    folded = unicodedata.normalize("NFKD", answer).encode("ascii", "ignore").decode("ascii").lower()
    folded = re.sub(r"\.(jpe?g|png|gif|webp|tiff?|bmp|heic|json)\s*$", "", folded)  # an extension it added
    words = re.findall(r"[a-z0-9]+", folded)
    name = ""
    for word in words:
        if len(name) + len(word) + (1 if name else 0) > MAX_NAME:
            break
        name = f"{name}-{word}" if name else word
    name = name or (word[:MAX_NAME] if (word := "".join(words)) else "")
    if not name:
        name = fallback if fallback == "image" else safe_filename(fallback)[0]
        notes.append(f"the model's file name {answer[:120]!r} had no usable letters: named {name!r}")
    if name in RESERVED:  # a device on Windows (names here have no dot, so only the bare word is one)
        name = f"{name}-image"
    return name[:MAX_NAME], notes


def claim(folder: Path, stem: str, extension: str) -> tuple[str, int, int]:
    """Create `<stem>.<ext>` and `<stem>.json` exclusively (O_EXCL, no symlink followed): a name taken is never
    overwritten, the next one (`-2`, `-3`...) is tried. Returns the stem and the two open descriptors."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for number in range(1, 10_000):
        suffix = "" if number == 1 else f"-{number}"
        candidate = stem[: MAX_NAME - len(suffix)] + suffix
        try:
            image_fd = os.open(folder / f"{candidate}{extension}", flags, 0o644)
        except FileExistsError:
            continue
        try:
            json_fd = os.open(folder / f"{candidate}.json", flags, 0o644)
        except FileExistsError:
            os.close(image_fd)
            os.unlink(folder / f"{candidate}{extension}")
            continue
        return candidate, image_fd, json_fd
    raise OSError(f"no free name for {stem!r} in {folder}")


@dataclass
class Classified:
    source: str
    name: str = ""
    target: str = ""
    title: str = ""
    description: str = ""
    keywords: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str = ""


def processed_folder(root: Path) -> Path:
    """`<root>/processed`, created; a symlink there (pointing anywhere) is refused."""
    folder = root / PROCESSED
    if folder.is_symlink():
        raise OSError(f"{folder} is a symbolic link: refusing to write through it")
    folder.mkdir(exist_ok=True)
    return folder


def classify_image(client: ChatBackend, path: Path, folder: Path, max_keywords: int, long_side: int) -> Classified:
    """Ask, sanitise, copy (verified), write the JSON. Never raises for one image: its error is in the result."""
    result = Classified(str(path))
    try:
        picture = open_image(str(path), max_pixels=settings.MAX_IMAGE_PIXELS, draft_size=long_side).image
        jpeg = jpeg_bytes(picture, long_side)  # upright: decoding dropped the orientation it applied

        def read(data: dict):
            keywords, notes = clean_keywords(data["keywords"], max_keywords)
            texts = " ".join([data["title"], data["description"], *keywords])
            problem = "no keywords" if not keywords else wrong_language(texts, "en")
            return (data | {"keywords": keywords}), notes, problem

        data, notes, _ = ask_validated(
            client, SYSTEM, "Catalogue this image.", classify_schema(max_keywords), jpeg, read, name="classify"
        )
        result.title, result.description = " ".join(data["title"].split()), " ".join(data["description"].split())
        result.keywords, result.notes = data["keywords"], notes
        stem, escape = safe_filename(data["filename"], fallback=result.title)
        for note in escape:
            log.warning("image_classifier: %s: %s", path, note)
        result.notes += escape
        result.name, image_fd, json_fd = claim(folder, stem, path.suffix.lower())
        result.target = str(folder / f"{result.name}{path.suffix.lower()}")
        record = {
            "title": result.title, "description": result.description, "keywords": result.keywords,
            "source": str(path), "file": os.path.basename(result.target), "model": client.config.model,
        }  # fmt: skip
        try:
            copy_verified(path, image_fd, result.target)
            with os.fdopen(json_fd, "w", encoding="utf-8") as out:
                json_fd = None
                json.dump(record, out, ensure_ascii=False, indent=2)
        except BaseException:  # the claimed names go again: no empty JSON, no half copy left in processed/
            if json_fd is not None:
                os.close(json_fd)
            for leftover in (result.target, folder / f"{result.name}.json"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(leftover)
            result.target = ""
            raise
    except (ImageDecodeError, StageFailed, LLMError, OSError) as exc:
        result.error = describe_error(exc)
    return result


def copy_verified(source: Path, fd: int, target: str) -> None:
    """Copy into the claimed file (the descriptor is closed whatever happens) and compare the copy's hash with the
    source's; a mismatch removes the copy."""
    digest = hashlib.sha256()
    with os.fdopen(fd, "wb") as out, open(source, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    if file_sha256(target) != digest.hexdigest():
        os.unlink(target)
        raise OSError(f"the copy {target} does not match its source (hash differs); removed")


def images_in(root: Path, extensions: tuple[str, ...], recursive: bool) -> list[Path]:
    """The folder's images (and below with `recursive`), never those in a `processed` folder, no symlinks."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if recursive and d != PROCESSED)
        for name in sorted(files):
            path = Path(folder) / name
            if path.suffix.lower() in extensions and not path.is_symlink():
                found.append(path)
    return found
