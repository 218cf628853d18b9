"""Real image files for tests: every one is written by Pillow or ExifTool, never faked."""

import subprocess
from pathlib import Path

import numpy as np
from PIL import Image


def make_jpeg(path: Path, size=(64, 48), color=(128, 64, 32), noise: bool = True, orientation: int | None = None):
    pixels = np.full((size[1], size[0], 3), color, dtype=np.uint8)
    if noise:
        rng = np.random.default_rng(abs(hash((str(path), color))) % 2**32)
        pixels = np.clip(pixels.astype(int) + rng.integers(-20, 20, pixels.shape), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    image.save(path, "JPEG", quality=90, exif=exif.tobytes())
    return path


def write_keywords(path: Path, subject: list[str] = (), iptc: list[str] = ()) -> None:
    """Put keywords into a file the way another photo tool would (XMP-dc:Subject, IPTC:Keywords)."""
    args = ["exiftool", "-q", "-overwrite_original", "-IPTC:CodedCharacterSet=UTF8"]
    args += [f"-XMP-dc:Subject={word}" for word in subject]
    args += [f"-IPTC:Keywords={word}" for word in iptc]
    subprocess.run([*args, str(path)], check=True)
