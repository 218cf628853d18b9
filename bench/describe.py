"""Benchmark: the VLM stages (`describe_images`, 4 stages per image) against a simulated server, as a multiple of
seed 003's naive loop.

Real JPEGs (1600x1200, one colour each plus noise) go through tagsite's describe run to the loopback OpenAI-compatible
test server, which answers from each image's mean colour with a fixed latency per request and a fixed number of
parallel slots (default 300 ms, 4 slots), and faults in 5 % of its answers (`--faults`: 429 with Retry-After 1 s,
500, invalid JSON, truncated JSON, drawn at random): every image must still be described. The baseline is seed 003's
loop measured in the same run against the same server, without faults (the stricter comparison): one image at a
time, its stages in sequence, the same prompts, schemas and validation. It runs on a sample and is reported as a
rate (images/s). The ceiling is `slots` requests per latency: slots / (4 x latency) images/s, i.e. a ratio of
`slots` over the naive loop.

Runs in a throwaway database on the same PostgreSQL server, dropped at the end.
Usage: .venv/bin/python bench/describe.py [--images 100] [--latency 0.3] [--slots 4] [--faults 0.05]
"""

import argparse
import logging
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tagsite.settings")

import django  # noqa: E402

django.setup()

from bench.database import throwaway_database  # noqa: E402
from suggestions.models import STAGES, TextProposal  # noqa: E402
from suggestions.services.describe import (  # noqa: E402
    DescribeOptions,
    describe_images,
    get_profile,
    stage_prompt,
    stage_schema,
    system_prompt,
)
from tagsite.ai.base import LLMError  # noqa: E402
from tagsite.ai.openai_compat import jpeg_bytes  # noqa: E402
from tagsite.ai.registry import client_for_role  # noqa: E402
from tagsite.services.ingest import ingest_paths  # noqa: E402
from tests.factories import make_jpeg  # noqa: E402
from tests.llm_server import OpenAITestServer, colour_rule  # noqa: E402

FAULTS = ("429", "500", "invalid_json", "truncated")


def seed_003_loop(client, paths: list[Path], profile) -> int:
    """Seed 003's runner without its orchestration: per image, each stage's request after the other (one retry on
    an unusable answer, like tagsite's re-ask). Returns the images with every stage answered."""
    described = 0
    for path in paths:
        jpeg = jpeg_bytes(path, 1280)
        answered = 0
        for stage in STAGES:
            schema = stage_schema(stage, profile, profile.max_keywords)
            for _ in range(2):
                try:
                    client.chat_json(
                        system_prompt(profile), stage_prompt(stage, profile, profile.max_keywords), schema,
                        name=stage, images=[jpeg],
                    )  # fmt: skip
                except LLMError:
                    continue
                answered += 1
                break
        described += answered == len(STAGES)
    return described


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.3, help="Seconds per request at the server.")
    parser.add_argument("--slots", type=int, default=4, help="Requests the server serves at once.")
    parser.add_argument("--baseline-sample", type=int, default=8, help="Images the naive loop is timed on.")
    parser.add_argument("--faults", type=float, default=0.05, help="Share of the describe run's answers that fail.")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("tagsite.ai.openai_compat").setLevel(logging.WARNING)
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory() as folder, throwaway_database("describe"):
        colours = [tuple(rng.randrange(256) for _ in "rgb") for _ in range(args.images)]
        paths = [
            make_jpeg(Path(folder) / f"photo{i:04d}.jpg", size=(1600, 1200), color=colour)
            for i, colour in enumerate(colours)
        ]
        images = ingest_paths([str(path) for path in paths])
        with OpenAITestServer(latency=args.latency, slots=args.slots, models=["bench-vlm"]) as server:
            server.chat_rule = colour_rule
            for role in STAGES:
                os.environ[f"TAGSITE_LLM_{role.upper()}_URL"] = server.url
                os.environ[f"TAGSITE_LLM_{role.upper()}_MODEL"] = "bench-vlm"
                os.environ[f"TAGSITE_LLM_{role.upper()}_MAX_PARALLEL"] = str(args.slots)
            planned = [rng.choice(FAULTS) if rng.random() < args.faults else "none" for _ in range(6 * args.images)]
            server.inject(*planned)
            started = time.perf_counter()
            summary = describe_images(images, DescribeOptions())
            run_seconds = time.perf_counter() - started
            served = planned[: len(planned) - len(server.faults)]
            server.faults.clear()  # the baseline runs without faults
            requests = len(server.chat_requests())
            peak = server.max_in_flight
            profile = get_profile("default")
            with client_for_role("caption") as client:
                sample = paths[: args.baseline_sample]
                started = time.perf_counter()
                baseline_ok = seed_003_loop(client, sample, profile)
                baseline_seconds = time.perf_counter() - started
        stored = TextProposal.objects.count()

    rate = summary.described / run_seconds
    baseline_rate = len(sample) / baseline_seconds
    ceiling = args.slots / (len(STAGES) * args.latency)
    print(f"server: {args.latency * 1000:.0f} ms per request, {args.slots} parallel slots (peak in flight {peak})")
    print(
        f"describe_images: {summary.images} images in {run_seconds:.2f}s = {rate:.2f} images/s "
        f"({rate / ceiling:.0%} of the slot ceiling {ceiling:.2f}), {requests} requests "
        f"({requests / max(summary.images, 1):.2f} per image, 4 stages), "
        f"described {summary.described / summary.images:.1%}, {summary.failed} failed, {stored} text proposals"
    )
    print(
        f"seed-003 loop:   {len(sample)} images in {baseline_seconds:.2f}s = {baseline_rate:.2f} images/s "
        f"(one image at a time, stages in sequence; timed on a sample), described {baseline_ok / len(sample):.0%}"
    )
    injected = sum(fault != "none" for fault in served)
    print(
        f"faults: {injected} of the run's {len(served)} answers ({injected / max(len(served), 1):.1%}: "
        f"{', '.join(f'{kind} {served.count(kind)}' for kind in FAULTS)}); re-asked "
        f"{sum(counts['re-asked'] for counts in summary.stages.values())}"
    )
    print(f"ratio: {rate / baseline_rate:.2f}x (goal >= {0.9 * args.slots:.1f}x, the ceiling is {args.slots}x)")


if __name__ == "__main__":
    main()
