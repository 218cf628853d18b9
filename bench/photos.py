"""Real-size test photos for the benchmarks, so each one measures the same kind of file."""

from pathlib import Path

import numpy as np
from PIL import Image


def make_photo(path: Path, width: int, height: int, seed: int) -> None:
    """A photo-like JPEG: smooth colour fields with fine grain, about the size of a camera file."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 255, (height // 100, width // 100, 3), dtype=np.uint8))
    pixels = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
    pixels += rng.integers(-12, 12, (height, width, 1), dtype=np.int16)
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, "JPEG", quality=90)


def make_photos(folder: Path, count: int, width: int, height: int) -> list[str]:
    """`count` photos in `folder`, which is created; their paths in order."""
    folder.mkdir(parents=True)
    print(f"Generating {count} JPEGs of {width}x{height} in {folder} ...", flush=True)
    for index in range(count):
        make_photo(folder / f"photo_{index:05d}.jpg", width, height, index)
    return sorted(str(path) for path in folder.iterdir())
