"""Benchmark: the /tag_categorize tag list and chart at scale (tags, 30% of them categorised).

Tags with Zipf-like usage counts and their `TagCategory` rows (skewed over the 22 categories) are
written with SQL, then the page's queries are timed, best of three: a page of 100 tags most used
first (all, one category, uncategorised, a deep page), the paginator's count and the chart.

Runs in a throwaway database on the same PostgreSQL server, dropped at the end.
Usage: .venv/bin/python bench/tag_list.py [--tags 1000000]
"""

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tagsite.settings")

import django  # noqa: E402

django.setup()

from django.db import connection  # noqa: E402

from bench.database import throwaway_database  # noqa: E402


def best_of(function: Callable[[], object], repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def fill(count: int) -> None:
    """`count` tags used 1,000,000/i times; 30% categorised, category i of 22 taking a share that falls with i."""
    from categorization.models import ExtendedCategory, TagCategory
    from tagsite.models import Tag

    ids = list(ExtendedCategory.objects.order_by("code").values_list("pk", flat=True))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {Tag._meta.db_table} (name, display_name, danbooru_category, usage_count, created_at) "
            "SELECT 'tag_' || i, 'tag ' || i, 0, (1000000 / i)::int, now() FROM generate_series(1, %s) i",
            [count],
        )
        cursor.execute(
            f"INSERT INTO {TagCategory._meta.db_table} (tag_id, category_id) "
            f"SELECT id, (%s::bigint[])[1 + floor(%s * power(random(), 2))::int] FROM {Tag._meta.db_table} "
            "WHERE random() < 0.3",
            [ids, len(ids)],
        )
        cursor.execute("ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tags", type=int, default=1_000_000)
    args = parser.parse_args()

    with throwaway_database("tag_list"):
        from categorization.models import ExtendedCategory
        from categorization.services import distribution, filter_tags

        started = time.perf_counter()
        fill(args.tags)
        print(f"{args.tags:,} tags written in {time.perf_counter() - started:.1f}s")
        codes = list(ExtendedCategory.objects.order_by("code").values_list("code", flat=True))
        cases = {
            "page 1, all tags": lambda: list(filter_tags()[:100]),
            "page 51, all tags": lambda: list(filter_tags()[5000:5100]),
            f"page 1, {codes[0]} (most common)": lambda: list(filter_tags(code=codes[0])[:100]),
            f"page 1, {codes[-1]} (rarest)": lambda: list(filter_tags(code=codes[-1])[:100]),
            "page 1, uncategorised": lambda: list(filter_tags(state="uncategorised")[:100]),
            "count, all tags (paginator)": lambda: filter_tags().count(),
            f"count, {codes[0]} (paginator)": lambda: filter_tags(code=codes[0]).count(),
            "chart (distribution)": distribution,
        }
        for label, function in cases.items():
            print(f"{label:<40} {best_of(function) * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
