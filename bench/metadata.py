"""Benchmark: metadata write-back (write + read back + compare + atomic rename + record), files/s, as a multiple
of one `exiftool` process per file (seed 001's way), both measured in this run on the same kind of files.

N real-size JPEGs (default 500 at 3000x2000, about 2-3 MB each: ten generated photos, each copy made distinct
by a JPEG comment so every file has its own hash) are registered as imported images with 12 tags each, in a
throwaway database. tagsite writes them all with its writer (`-stay_open` ExifTool, many files per round trip,
on every core, each file verified by reading it back, hashed, fsynced and renamed). The baseline writes the same
fields into copies of a sample of the files, one `exiftool` process per file, one after the other, without
reading back; it is reported as a rate, which is what it is: a constant per-file cost.

Usage: .venv/bin/python bench/metadata.py [--files 500] [--width 3000 --height 2000] [--baseline-sample 40]
"""

import argparse
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tagsite.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from bench.database import throwaway_database  # noqa: E402
from bench.photos import make_photo  # noqa: E402
from tagsite import metadata  # noqa: E402
from tagsite.models import Image  # noqa: E402
from tagsite.services.tags import add_tags  # noqa: E402
from tagsite.services.writeback import WriteOptions, held_fields, write_images  # noqa: E402

TAGS = ["portrait", "outdoors", "blue sky", "smile", "long hair", "Küste", "sunset", "tree", "street", "red dress",
        "looking at viewer", "day"]  # fmt: skip


def make_files(folder: Path, count: int, width: int, height: int) -> list[str]:
    """`count` distinct real-size JPEGs: ten generated photos, copies told apart by a comment segment."""
    folder.mkdir(parents=True)
    print(f"Generating {count} JPEGs of {width}x{height} in {folder} ...", flush=True)
    bases = []
    for index in range(min(10, count)):
        path = folder / f"base_{index}.jpg"
        make_photo(path, width, height, index)
        bases.append(path.read_bytes())
        path.unlink()
    paths = []
    for index in range(count):
        data = bases[index % len(bases)]
        comment = f"bench copy {index}".encode()
        segment = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
        path = folder / f"photo_{index:05d}.jpg"
        path.write_bytes(data[:2] + segment + data[2:])
        paths.append(str(path))
    return paths


def register(paths: list[str]) -> list[int]:
    """The files as imported images (size, mtime, hash: what the writer checks), each with the bench's tags."""
    rows = []
    for path in paths:
        info = os.stat(path)
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        rows.append(Image(path=path, size=info.st_size, mtime=info.st_mtime, sha256=digest, format="JPEG"))
    images = Image.objects.bulk_create(rows)
    add_tags(images, TAGS)
    return [image.pk for image in images]


def cpu_seconds() -> float:
    """CPU used by this process and its ended children (the ExifTool processes once they are stopped)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def baseline(paths: list[str], held: dict[str, list[str]], workdir: Path) -> tuple[float, float]:
    """Seed 001's loop: one exiftool process per file, sequential. Returns files/s and CPU seconds per file."""
    workdir.mkdir()
    copies = []
    for path in paths:
        copy = workdir / Path(path).name
        shutil.copy2(path, copy)
        copies.append(copy)
    args = ["-IPTC:CodedCharacterSet=UTF8"]
    args += [f"-XMP-dc:Subject={word}" for word in held["keywords"]]
    args += [f"-IPTC:Keywords={word}" for word in held["keywords"]]
    cpu, start = cpu_seconds(), time.perf_counter()
    for copy in copies:
        subprocess.run(["exiftool", "-q", "-overwrite_original", *args, str(copy)], check=True)
    return len(copies) / (time.perf_counter() - start), (cpu_seconds() - cpu) / len(copies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--width", type=int, default=3000)
    parser.add_argument("--height", type=int, default=2000)
    parser.add_argument("--baseline-sample", type=int, default=40)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tagsite-bench-metadata-") as work, throwaway_database("metadata"):
        work = Path(work)
        settings.METADATA_DIR = work / "metadata"
        paths = make_files(work / "photos", options.files, options.width, options.height)
        megabytes = sum(os.path.getsize(path) for path in paths) / 1e6
        ids = register(paths)
        held = held_fields(ids[:1])[ids[0]]
        half = max(options.baseline_sample // 2, 1)
        print(f"Baseline: one exiftool process per file, {half} files before and {half} after tagsite's run ...")
        before = baseline(paths[:half], held, work / "baseline-before")
        print(f"tagsite: {len(paths)} files ({megabytes:.0f} MB), {settings.METADATA_WRITE_THREADS} threads ...")
        cpu = cpu_seconds()
        start = time.perf_counter()
        counts = write_images(ids, WriteOptions())
        took = time.perf_counter() - start
        cpu = cpu_seconds() - cpu
        after = baseline(paths[half : 2 * half], held, work / "baseline-after")
        assert counts == {"written": len(ids)}, counts
        check = metadata.read_fields([paths[-1]])[paths[-1]]
        metadata.stop()
        assert check[metadata.SUBJECT] == held["keywords"] == check[metadata.KEYWORDS], check
        base_rate, base_cpu = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
        rate = len(ids) / took
        print(
            f"baseline (exiftool per file): {base_rate:6.1f} files/s (before {before[0]:.1f}, after {after[0]:.1f}),"
            f" {base_cpu * 1000:5.0f} ms CPU per file"
        )
        print(
            f"tagsite (written + verified): {rate:6.1f} files/s ({took:.1f} s for {len(ids)} files),"
            f" {cpu / len(ids) * 1000:5.0f} ms CPU per file"
        )
        print(f"ratio: {rate / base_rate:.1f}x files/s (goal >= 20x) on {os.cpu_count()} cores under a load of"
              f" {os.getloadavg()[0]:.1f}; {base_cpu / (cpu / len(ids)):.1f}x less CPU per file")  # fmt: skip


if __name__ == "__main__":
    main()
