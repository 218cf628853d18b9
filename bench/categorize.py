"""Benchmark: LLM tag categorisation against a simulated server, as a multiple of seed 000's loop.

10,000 real tags (../shared/data/danbooru_tags.csv) go through tagsite's categoriser to a loopback
test server, OpenAI-compatible or Gemini (`--kind`), with a fixed latency per request and a fixed
number of parallel slots (default 100 ms, 4 slots), and faults in 5 % of its answers (`--faults`: 429,
500, invalid JSON, truncated JSON, drawn at random): the categoriser must still categorise >= 99.9 %.
The baseline is seed 000's loop measured in the same run against the same server, without faults (the
stricter comparison): one tag per request, sequential. The baseline runs on a sample and is reported as
a rate (tags/s), which is what it is: a constant per-tag cost.

Runs in a throwaway database on the same PostgreSQL server, dropped at the end.
Usage: .venv/bin/python bench/categorize.py [--tags 10000] [--latency 0.1] [--slots 4] [--kind openai|gemini]
       [--faults 0.05]
"""

import argparse
import csv
import logging
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tagsite.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from bench.database import throwaway_database  # noqa: E402
from categorization.services import Prompt, categorize_uncategorized  # noqa: E402
from tagsite.ai.base import LLMError  # noqa: E402
from tagsite.ai.registry import client_for_role  # noqa: E402
from tagsite.models import Tag  # noqa: E402
from tagsite.services.tags import display_name_for, normalize_tag_name  # noqa: E402
from tests.llm_server import GeminiTestServer, OpenAITestServer, categorize_rule  # noqa: E402

TAGS_CSV = ROOT.parent / "shared" / "data" / "danbooru_tags.csv"
SERVERS = {"openai": OpenAITestServer, "gemini": GeminiTestServer}
FAULTS = {"openai": ("429", "500", "invalid_json", "truncated"), "gemini": ("rate_minute", "500")}


def load_tags(count: int) -> list[Tag]:
    """The `count` most used distinct tag names of the CSV (name, category, post count, aliases)."""
    tags: dict[str, Tag] = {}
    with TAGS_CSV.open(newline="", encoding="utf-8") as handle:
        for name, _category, posts, _aliases in csv.reader(handle):
            key = normalize_tag_name(name)
            if key and key not in tags:
                tags[key] = Tag(name=key, display_name=display_name_for(name)[:255], usage_count=int(posts))
            if len(tags) == count:
                break
    return list(tags.values())


def seed_000_loop(client, tags: list[Tag], prompt: Prompt) -> int:
    """Seed 000's script: one request per tag, one after the other, up to 3 tries each. Returns successes."""
    schema = {
        "type": "object",
        "properties": {"category": {"type": "string", "enum": sorted(prompt.codes)}},
        "required": ["category"],
        "additionalProperties": False,
    }
    successes = 0
    for tag in tags:
        for _ in range(3):
            try:
                client.chat_json(prompt.system, f"Tag: {tag.name} (used {tag.usage_count}x)", schema, name="category")
            except LLMError:
                continue
            successes += 1
            break
    return successes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.1, help="Seconds per request at the server.")
    parser.add_argument("--slots", type=int, default=4, help="Requests the server serves at once.")
    parser.add_argument("--kind", choices=sorted(SERVERS), default="openai", help="The backend (and test server).")
    parser.add_argument("--request-size", type=int, default=settings.CATEGORIZE_REQUEST_SIZE)
    parser.add_argument("--baseline-sample", type=int, default=50, help="Tags the sequential loop is timed on.")
    parser.add_argument("--faults", type=float, default=0.05, help="Share of the categoriser's answers that fail.")
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)

    with throwaway_database("categorize"):
        with SERVERS[args.kind](latency=args.latency, slots=args.slots) as server:
            server.chat_rule = categorize_rule()
            os.environ.update(
                TAGSITE_LLM_CATEGORIZE_URL=server.url,
                TAGSITE_LLM_CATEGORIZE_KIND=args.kind,
                TAGSITE_LLM_CATEGORIZE_MODEL="test-model",
                TAGSITE_LLM_CATEGORIZE_MAX_PARALLEL=str(args.slots),
                TAGSITE_LLM_CATEGORIZE_API_KEY_ENV="TAGSITE_BENCH_KEY",  # Gemini needs one; the test server ignores it
                TAGSITE_BENCH_KEY="bench",
            )
            tags = Tag.objects.bulk_create(load_tags(args.tags))
            prompt = Prompt.build()
            rng = random.Random(args.seed)
            planned = [
                rng.choice(FAULTS[args.kind]) if rng.random() < args.faults else "none"
                for _ in range(10 * len(tags) // args.request_size + 100)
            ]
            server.inject(*planned)
            with client_for_role("categorize") as client:
                started = time.perf_counter()
                summary = categorize_uncategorized(client, limit=len(tags), request_size=args.request_size)
                batched_seconds = time.perf_counter() - started
                served = planned[: len(planned) - len(server.faults)]
                server.faults.clear()  # the baseline runs without faults
                sample = tags[: args.baseline_sample]
                started = time.perf_counter()
                baseline_ok = seed_000_loop(client, sample, prompt)
                baseline_seconds = time.perf_counter() - started
            peak = server.max_in_flight

    batched_rate = summary.processed / batched_seconds
    baseline_rate = len(sample) / baseline_seconds
    print(
        f"{args.kind} server: {args.latency * 1000:.0f} ms per request, {args.slots} parallel slots "
        f"(peak in flight {peak})"
    )
    print(
        f"categoriser:   {summary.processed} tags in {batched_seconds:.2f}s = {batched_rate:,.1f} tags/s, "
        f"{summary.requests} requests ({summary.requests / summary.processed:.3f} per tag, "
        f"{args.request_size} tags per request), categorised {summary.successful / summary.processed:.1%}"
    )
    print(
        f"seed-000 loop: {len(sample)} tags in {baseline_seconds:.2f}s = {baseline_rate:,.2f} tags/s "
        f"(one tag per request, sequential; timed on a sample of {len(sample)}, a rate extrapolates linearly), "
        f"1.000 requests per tag, categorised {baseline_ok / len(sample):.1%}"
    )
    injected = sum(fault != "none" for fault in served)
    print(
        f"faults: {injected} of the categoriser's {len(served)} answers ({injected / len(served):.1%}: "
        f"{', '.join(f'{kind} {served.count(kind)}' for kind in FAULTS[args.kind])}); "
        f"categorised {summary.successful / summary.processed:.2%} (goal >= 99.9%), "
        f"{len(summary.warnings)} degenerate answers"
    )
    print(f"ratio: {batched_rate / baseline_rate:,.1f}x (goal >= 100x)")


if __name__ == "__main__":
    main()
