"""Import speed as a fraction of the machine's raw hash + decode + thumbnail rate, measured side by side.

    .venv/bin/python bench/ingest.py [--count 500] [--size 3000x2000]

Generates real-size JPEGs, then measures (1) a plain loop that hashes, decodes (the same
draft-mode decode the importer uses) and thumbnails every file on all cores, and (2)
`import_folder` into a throwaway database (hash, decode, thumbnail, ExifTool keyword read,
database writes). Prints both rates and their ratio.
"""

import argparse
import hashlib
import io
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.database import throwaway_database  # noqa: E402
from bench.photos import make_photos  # noqa: E402


def raw_work(path: str, thumb_dir: str, thumb_size: int, max_pixels: int) -> None:
    from tagsite import imaging

    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    decoded = imaging.open_image(io.BytesIO(data), max_pixels=max_pixels, draft_size=thumb_size)
    Path(thumb_dir, f"{digest}.jpg").write_bytes(imaging.thumbnail_jpeg(decoded.image, thumb_size))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--size", default="3000x2000")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="tagsite-bench-ingest-"))
    os.environ["TAGSITE_MEDIA_DIR"] = str(work / "media")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tagsite.settings")

    import django

    django.setup()
    from django.conf import settings

    from tagsite.services.ingest import import_folder

    folder = work / "photos"
    files = make_photos(folder, args.count, width, height)
    megabytes = sum(Path(f).stat().st_size for f in files) / 1e6
    cores = os.cpu_count() or 1
    print(f"{len(files)} files, {megabytes:.0f} MB, {cores} cores", flush=True)

    thumbs = work / "raw-thumbs"
    thumbs.mkdir()
    started = time.perf_counter()
    with ProcessPoolExecutor(cores) as pool:
        list(
            pool.map(
                raw_work,
                files,
                [str(thumbs)] * len(files),
                [settings.THUMBNAIL_SIZE] * len(files),
                [settings.MAX_IMAGE_PIXELS] * len(files),
                chunksize=4,
            )
        )
    raw_rate = len(files) / (time.perf_counter() - started)

    with throwaway_database("ingest"):
        started = time.perf_counter()
        counts = import_folder(folder)
        import_rate = len(files) / (time.perf_counter() - started)
        started = time.perf_counter()
        rescan = import_folder(folder)
        rescan_seconds = time.perf_counter() - started

    assert counts.get("new") == len(files), counts
    print(f"raw hash+decode+thumbnail loop, {cores} processes: {raw_rate:7.1f} images/s")
    print(f"import_folder (+ExifTool, +database):       {import_rate:7.1f} images/s")
    print(f"ratio import / raw:                          {import_rate / raw_rate:7.2f}")
    print(f"rescan of the unchanged folder: {rescan_seconds:.2f} s ({rescan})")


if __name__ == "__main__":
    main()
