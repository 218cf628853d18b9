"""Benchmark: emotion labels, local and chat, each measured side by side with its baseline.

1. Local backend: faces/s end to end (`label_images`: decode, detect, classify, store in a throwaway database,
   reader threads on all cores) as a fraction of the raw detect + classify rate of a plain loop over the same
   files (the same decode, yuface and the ONNX classifier, one process per core, nothing stored). The two
   alternate for `--rounds` rounds; the median round's ratio is the figure.
2. Chat backend: images/s of the VLM path (a request per face crop, at the endpoint's slots) against the
   loopback OpenAI-compatible server with `--slots` parallel slots and `--latency` per request, as a multiple
   of seed 004's loop in the same run: one request per image (the whole image), one after the other; and the
   same files in whole-image mode (`--chat-input image`: no local detection, one request per image).

The photos are the test suite's real faces (scikit-image, matplotlib, face_recognition's test images; fetched
once into var/test-data/emotion/), copied `--count` times with a distinct byte each so every copy is an image
of its own.

Usage: .venv/bin/python bench/emotion.py [--count 60] [--rounds 3] [--chat-count 24] [--latency 0.3] [--slots 4]
"""

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FACES = ["astronaut.png", "grace_hopper.jpg", "obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "two_faces.jpg"]
_worker_labeller = None


def copies(source: Path, folder: Path, count: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index in range(count):
        name = FACES[index % len(FACES)]
        target = folder / f"{index:04d}-{name}"
        shutil.copy(source / name, target)
        with target.open("ab") as handle:  # a distinct file (and hash) per copy; decoders ignore trailing bytes
            handle.write(index.to_bytes(4, "big"))
        files.append(str(target))
    return files


def raw_faces(path: str) -> int:
    """The raw work of one file: the same decode, detection and classification, nothing stored."""
    global _worker_labeller
    import django

    if _worker_labeller is None:
        django.setup()
        from emotion.services import local_labeller

        _worker_labeller = local_labeller()
    import numpy as np

    from emotion.services import decode, face_crop

    image, _ = decode(path)
    faces = _worker_labeller.detector.detect(np.asarray(image))[: _worker_labeller.max_faces]
    if faces:
        _worker_labeller.classifier.classify([face_crop(image, face.box) for face in faces])
    return len(faces)


def raw_rate(pool: ProcessPoolExecutor, files: list[str]) -> tuple[float, int]:
    started = time.perf_counter()
    faces = sum(pool.map(raw_faces, files, chunksize=2))
    return faces / (time.perf_counter() - started), faces


def seed_004_loop(client, paths: list[str]) -> int:
    """Seed 004's script: the whole image to the model, one request per image, sequential, up to 3 tries."""
    from emotion.services import SYSTEM_PROMPT, USER_PROMPT, answer_schema
    from tagsite.ai.base import LLMError

    done = 0
    for path in paths:
        for _ in range(3):
            try:
                client.chat_json(SYSTEM_PROMPT, USER_PROMPT, answer_schema(), name="emotion", images=[path])
            except LLMError:
                continue
            done += 1
            break
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=60, help="Files for the local backend.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chat-count", type=int, default=24, help="Files for the chat backend.")
    parser.add_argument("--baseline-sample", type=int, default=8, help="Files seed 004's loop is timed on.")
    parser.add_argument("--latency", type=float, default=0.3, help="Seconds per request at the server.")
    parser.add_argument("--slots", type=int, default=4, help="Requests the server serves at once.")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tagsite-bench-emotion-"))
    os.environ["TAGSITE_MEDIA_DIR"] = str(work / "media")
    os.environ["TAGSITE_SUGGESTIONS_ON_INGEST"] = "0"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tagsite.settings")
    import django

    django.setup()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from importlib import import_module

    from django.apps import apps

    from bench.database import throwaway_database
    from emotion.models import ImageEmotion
    from emotion.services import label_images, local_labeller, open_labeller
    from tagsite.services.ingest import ingest_paths
    from tests.emotion.conftest import fetch_photos
    from tests.llm_server import OpenAITestServer

    photos = fetch_photos()
    files = copies(photos, work / "local", args.count)
    chat_files = copies(photos, work / "chat", args.chat_count)
    cores = os.cpu_count() or 1
    labeller = local_labeller()  # converts the ONNX graph once, before anything is timed
    with throwaway_database("emotion"):
        import_module("emotion.migrations.0002_labels_and_synonyms").add(apps, None)
        images = ingest_paths(files)
        rounds = []
        with ProcessPoolExecutor(cores) as pool:
            list(pool.map(raw_faces, files[:cores], chunksize=1))  # each process loads its models first
            for number in range(1, args.rounds + 1):
                raw, raw_count = raw_rate(pool, files)
                ImageEmotion.objects.all().delete()
                started = time.perf_counter()
                summary = label_images(labeller, images, threads=cores)
                seconds = time.perf_counter() - started
                assert summary.images == len(files) and summary.failed == 0, summary.line()
                assert summary.faces == raw_count, (summary.faces, raw_count)
                pipeline = summary.faces / seconds
                print(
                    f"round {number}: raw {raw:6.1f} faces/s, pipeline {pipeline:6.1f} faces/s "
                    f"({summary.proposals} proposals), ratio {pipeline / raw:.2f}",
                    flush=True,
                )
                rounds.append((pipeline / raw, raw, pipeline, summary))
        ratio, raw, pipeline, summary = statistics.median_low(rounds)
        print(f"local, {len(files)} files, {summary.faces} faces, {cores} cores:")
        print(f"  raw detect+classify loop, {cores} processes:          {raw:7.1f} faces/s (median round)")
        print(f"  label_images (decode, detect, classify, store):  {pipeline:7.1f} faces/s")
        print(f"  ratio pipeline / raw (median of {args.rounds} rounds):     {ratio:7.2f}")

        chat_images = ingest_paths(chat_files)
        with OpenAITestServer(latency=args.latency, slots=args.slots) as server:

            def answer(body: dict) -> dict:
                """A smile; whole-image mode's schema also asks whether a face is seen."""
                asked = body["response_format"]["json_schema"]["schema"]["properties"]
                return {"emotion": "happy", "confidence": 0.9, **({"face": True} if "face" in asked else {})}

            server.chat_rule = answer
            os.environ.update(
                TAGSITE_LLM_EMOTION_URL=server.url,
                TAGSITE_LLM_EMOTION_KIND="openai",
                TAGSITE_LLM_EMOTION_MODEL="test-model",
                TAGSITE_LLM_EMOTION_MAX_PARALLEL=str(args.slots),
            )
            with open_labeller("llm") as (chat, threads, _):
                started = time.perf_counter()
                chat_summary = label_images(chat, chat_images, threads=threads)
                chat_seconds = time.perf_counter() - started
                requests = len(server.chat_requests())
            with open_labeller("llm", chat_input="image") as (whole, threads, _):
                started = time.perf_counter()
                whole_summary = label_images(whole, chat_images, threads=threads)
                whole_seconds = time.perf_counter() - started
                assert whole_summary.images == len(chat_images) and whole_summary.failed == 0, whole_summary.line()
                sample = chat_files[: args.baseline_sample]
                started = time.perf_counter()
                baseline_done = seed_004_loop(whole.client, sample)
                baseline_seconds = time.perf_counter() - started
            peak = server.max_in_flight
    chat_rate = chat_summary.images / chat_seconds
    baseline_rate = baseline_done / baseline_seconds
    print(
        f"chat, OpenAI-compatible loopback server: {args.latency * 1000:.0f} ms/request, {args.slots} slots "
        f"(peak {peak})"
    )
    print(
        f"  tagsite: {chat_summary.images} images ({chat_summary.faces} faces, {requests} requests) in "
        f"{chat_seconds:.2f}s = {chat_rate:.2f} images/s, {chat_summary.proposals} labels"
    )
    print(
        f"  seed 004's loop: {baseline_done} images in {baseline_seconds:.2f}s = {baseline_rate:.2f} images/s "
        f"(whole image, one request each, sequential; timed on a sample of {len(sample)})"
    )
    print(f"  ratio: {chat_rate / baseline_rate:.2f}x")
    whole_rate = whole_summary.images / whole_seconds
    print(
        f"  whole-image mode: {whole_summary.images} images in {whole_seconds:.2f}s = {whole_rate:.2f} images/s, "
        f"ratio {whole_rate / baseline_rate:.2f}x"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
