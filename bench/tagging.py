"""Tagging speed as a fraction of the machine's raw decode + resize rate, measured side by side.

    .venv/bin/python bench/tagging.py [--count 200] [--size 3000x2000] [--batch-size 32] [--rounds 3] [--model DIR]

Generates real-size JPEGs, then measures (1) a plain loop that decodes every file (JPEG draft
mode, the fastest correct decode, the same the tagger uses) and resizes it to the model's input
size with bicubic, on all cores, and (2) `suggest_tags` on the same files: decode, WD14
preprocessing, ONNX inference and storing suggestions in a throwaway database. The model is the
test suite's pixel-driven WD14-contract graph unless --model names a folder with model.onnx and
selected_tags.csv. The two alternate for `--rounds` rounds (each pipeline round as a new model
version, so it does the whole work again); a round's ratio compares neighbours in time, and the
median round is the figure, so a burst of load elsewhere on the machine skews neither side.
Prints both rates and their ratio (the goal is at least 0.8).
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.database import throwaway_database  # noqa: E402
from bench.photos import make_photos  # noqa: E402


def raw_work(path: str, size: int) -> None:
    with Image.open(path) as image:
        image.draft("RGB", (size, size))
        image.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)


def raw_rate(files: list[str], size: int, cores: int) -> float:
    started = time.perf_counter()
    with ProcessPoolExecutor(cores) as pool:
        list(pool.map(raw_work, files, [size] * len(files), chunksize=4))
    return len(files) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--size", default="3000x2000")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", help="A folder with model.onnx and selected_tags.csv")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="tagsite-bench-tagging-"))
    os.environ["TAGSITE_MEDIA_DIR"] = str(work / "media")
    os.environ["TAGSITE_MODELS_DIR"] = str(work / "models")
    os.environ["TAGSITE_SUGGESTIONS_ON_INGEST"] = "0"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tagsite.settings")

    import django

    django.setup()
    from django.conf import settings

    from suggestions import services
    from suggestions.models import TagSuggestion
    from tagsite.ai.onnx import load_tagger
    from tagsite.services.ingest import ingest_paths
    from tests.suggestions.wd14 import build_model

    files = make_photos(work / "photos", args.count, width, height)
    cores = os.cpu_count() or 1
    model_dir = Path(args.model) if args.model else build_model(work / "test-model")

    with throwaway_database("tagging"):
        images = ingest_paths(files)
        tagger = load_tagger(str(model_dir / "model.onnx"), use_gpu=settings.SUGGESTIONS_USE_GPU)
        size = tagger.input_size
        print(f"{len(files)} files, {cores} cores, model input {size}, {tagger.providers[0]}", flush=True)
        rounds = []
        for number in range(1, args.rounds + 1):
            raw = raw_rate(files, size, cores)
            model = services.install_model("bench", model_dir, version=f"bench-{number}")
            started = time.perf_counter()
            counts = services.suggest_tags(model, images, batch_size=args.batch_size)
            pipeline = len(files) / (time.perf_counter() - started)
            assert counts["images"] == len(files) and counts["failed"] == 0, counts
            ratio = pipeline / raw
            print(f"round {number}: raw {raw:6.1f} images/s, pipeline {pipeline:6.1f} images/s, ratio {ratio:.2f}")
            rounds.append((ratio, raw, pipeline))
        stored = TagSuggestion.objects.filter(model_version=model).count()

    ratio, raw, pipeline = statistics.median_low(rounds)
    print(f"raw decode+resize loop, {cores} processes:         {raw:7.1f} images/s (median round)")
    print(f"suggest_tags (decode, preprocess, infer, store): {pipeline:7.1f} images/s ({stored} suggestions per round)")
    print(f"ratio pipeline / raw (median of {args.rounds} rounds):  {ratio:7.2f}")


if __name__ == "__main__":
    main()
