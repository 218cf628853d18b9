"""Benchmark: tag dedupe at booru scale against seed 001's method (scikit-learn DBSCAN over all pairs).

The most used tags of ../shared/data/danbooru_tags.csv are embedded once with the local MiniLM model (the
rate is printed; vectors are cached under var/bench/ for the next run) and stored in a throwaway database,
one embedding space per size so each size has its own HNSW index. At each small size (default 5k, 10k,
20k) seed 001's method, DBSCAN(metric="cosine", eps=1 - threshold, min_samples=2), and tagsite's
clustering (`dedupe.services.find_clusters`: neighbours from the HNSW index, complete linkage, guards)
run on the same stored vectors: time, peak memory of the process (each run in its own forked child, so
one run's memory is not the next one's), and the agreement of the two clusterings as pairwise precision
and recall of tagsite's pairs against DBSCAN's, for tagsite unguarded (embedding only, the same
question DBSCAN answers, but complete-linkage) and guarded (what dedupe_tags proposes). Then tagsite alone
at the large sizes (default 100k and 140k): DBSCAN's n x n matrix would need 40 GB there.

Needs scikit-learn (a bench-only dependency): .venv/bin/pip install -r bench/requirements.txt
Usage: .venv/bin/python bench/dedupe.py [--sizes 5000,10000,20000] [--large 100000,140000] [--threshold 0.85]
"""

import argparse
import csv
import hashlib
import multiprocessing
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tagsite.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
from django.db import connection  # noqa: E402

from bench.database import throwaway_database  # noqa: E402
from dedupe import services  # noqa: E402
from dedupe.clustering import pair_scores  # noqa: E402
from dedupe.models import EmbeddingSpace  # noqa: E402
from tagsite.ai.local_embeddings import LocalMiniLM  # noqa: E402
from tagsite.models import Producer, Tag  # noqa: E402
from tagsite.services.tags import display_name_for, normalize_tag_name  # noqa: E402

TAGS_CSV = ROOT.parent / "shared" / "data" / "danbooru_tags.csv"
CACHE = ROOT / "var" / "bench"


def load_names(count: int) -> list[tuple[str, str, int, int]]:
    """(name, display name, category, posts) of the `count` most used distinct tags."""
    found: dict[str, tuple[str, str, int, int]] = {}
    with TAGS_CSV.open(newline="", encoding="utf-8") as handle:
        for name, category, posts, _aliases in csv.reader(handle):
            key = normalize_tag_name(name)
            if key and key not in found:
                found[key] = (key, display_name_for(name)[:255], int(category), int(posts))
            if len(found) == count:
                break
    return list(found.values())


def vectors_for(rows: list[tuple[str, str, int, int]]) -> np.ndarray:
    """The rows' MiniLM vectors, from the cache when the same names were embedded before."""
    texts = [services.embedding_text(display) for _, display, _, _ in rows]
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    path = CACHE / f"dedupe_minilm_{len(texts)}_{digest}.npy"
    if path.exists():
        print(f"vectors: {path} (cached)", flush=True)
        return np.load(path)
    started, cpu = time.perf_counter(), time.process_time()
    vectors = LocalMiniLM().embed_array(texts)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(
        f"embedded {len(texts)} tags in {seconds:.1f}s: {len(texts) / seconds:.0f} tags/s "
        f"({len(texts) / cpu:.0f} per CPU-second, {os.cpu_count()} cores)"
    )
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def fill(rows, vectors: np.ndarray, sizes: list[int]) -> dict[int, EmbeddingSpace]:
    """The tags, and one space per size holding the first `size` vectors, each with its index."""
    Tag.objects.bulk_create(
        [Tag(name=n, display_name=d, danbooru_category=c, usage_count=p) for n, d, c, p in rows], batch_size=5000
    )
    ids = dict(Tag.objects.values_list("name", "pk"))
    tag_ids = [ids[name] for name, _, _, _ in rows]
    texts = [services.embedding_text(display) for _, display, _, _ in rows]
    spaces = {}
    for size in sizes:
        producer = Producer.objects.create(kind=Producer.Kind.EMBEDDING, name=f"bench-minilm-{size}")
        space = EmbeddingSpace.objects.create(
            producer=producer, dimensions=vectors.shape[1], endpoint={"kind": "local"}
        )
        started = time.perf_counter()
        for start in range(0, size, 5000):
            end = min(start + 5000, size)
            services.store_vectors(space, tag_ids[start:end], texts[start:end], vectors[start:end])
        stored = time.perf_counter() - started
        started = time.perf_counter()
        services.ensure_index(space)
        print(f"  {size} vectors stored in {stored:.1f}s, HNSW index built in {time.perf_counter() - started:.1f}s")
        spaces[size] = space
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE dedupe_tagembedding")
    return spaces


def in_child(function, *args):
    """Run `function(*args)` in a forked child: (its result, seconds, peak RSS growth in MB)."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()

    def run():
        import psutil

        base = psutil.Process().memory_info().rss
        started = time.perf_counter()
        result = function(*args)
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        queue.put((result, seconds, (peak - base) / 2**20))

    connection.close()  # closed before the fork: the child opens its own session (closing a shared one kills both)
    child = context.Process(target=run)
    child.start()
    result = queue.get()
    child.join()
    return result


def direct_pairs(vectors: np.ndarray, ids: list[int], threshold: float) -> set[tuple[int, int]]:
    """Every pair at or above the threshold, exactly (blocked products): what the index's neighbours should find."""
    found = set()
    for start in range(0, len(vectors), 1000):
        block = vectors[start : start + 1000] @ vectors.T
        for i, j in zip(*np.nonzero(block >= threshold), strict=True):
            a, b = ids[start + i], ids[j]
            if a < b:
                found.add((a, b))
    return found


def dbscan_clusters(vectors: np.ndarray, ids: list[int], threshold: float) -> list[list[int]]:
    from sklearn.cluster import DBSCAN

    labels = DBSCAN(eps=1 - threshold, min_samples=2, metric="cosine").fit(vectors).labels_
    groups: dict[int, list[int]] = {}
    for pk, label in zip(ids, labels, strict=True):
        if label >= 0:
            groups.setdefault(int(label), []).append(pk)
    return list(groups.values())


def tagsite_clusters(space_id: int, threshold: float, guards: bool) -> list[list[int]]:
    from dedupe.clustering import TagInfo, cluster_tags

    space = EmbeddingSpace.objects.get(pk=space_id)
    if guards:
        return [[t.id for t in c.members] for c in services.find_clusters(space, threshold=threshold)]
    infos = [TagInfo(*row) for row in Tag.objects.filter(embeddings__space=space).values_list("pk", "name")]
    pairs = services.neighbour_pairs(space, threshold)
    clusters = cluster_tags(
        infos, pairs, lambda ids: services.vectors_for(space, ids), threshold=threshold, guards=False, lexical=False
    )
    return [[t.id for t in c.members] for c in clusters]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="5000,10000,20000")
    parser.add_argument("--large", default="100000,140000")
    parser.add_argument("--threshold", type=float, default=services.DEFAULT_THRESHOLD)
    options = parser.parse_args()
    sizes = [int(s) for s in options.sizes.split(",") if s]
    large = [int(s) for s in options.large.split(",") if s]
    rows = load_names(max(sizes + large))
    vectors = vectors_for(rows)
    sizes = [s for s in sizes if s <= len(rows)]
    large = sorted({min(s, len(rows)) for s in large})
    threshold = options.threshold
    with throwaway_database("dedupe"):
        spaces = fill(rows, vectors, sizes + large)
        ids = dict(Tag.objects.values_list("name", "pk"))
        tag_ids = [ids[name] for name, _, _, _ in rows]
        load = os.getloadavg()[0]
        print(f"\nthreshold {threshold}; time in s, peak memory growth of the process in MB; load average {load:.1f}")
        print("tags | DBSCAN s / MB | tagsite unguarded s / MB | agreement P / R | tagsite guarded s / MB | ratio")
        for size in sizes:
            reference, db_s, db_mb = in_child(dbscan_clusters, vectors[:size], tag_ids[:size], threshold)
            plain, ts_s, ts_mb = in_child(tagsite_clusters, spaces[size].pk, threshold, False)
            guarded, tg_s, tg_mb = in_child(tagsite_clusters, spaces[size].pk, threshold, True)
            score = pair_scores(plain, reference)
            exact = direct_pairs(vectors[:size], tag_ids[:size], threshold)
            found = {(a, b) for a, b, _ in services.neighbour_pairs(spaces[size], threshold)}
            recall = len(found & exact) / max(len(exact), 1)
            print(f"  index recall of the {len(exact)} pairs >= {threshold}: {recall:.3f}")
            print(
                f"{size} | {db_s:.2f} / {db_mb:.0f} | {ts_s:.2f} / {ts_mb:.0f} | "
                f"{score['precision']:.3f} / {score['recall']:.3f} ({score['pairs_true']} DBSCAN pairs) | "
                f"{tg_s:.2f} / {tg_mb:.0f} ({len(guarded)} clusters) | DBSCAN / tagsite {db_s / tg_s:.2f}x time, "
                f"{db_mb / max(tg_mb, 1):.1f}x memory"
            )
        for size in large:
            guarded, tg_s, tg_mb = in_child(tagsite_clusters, spaces[size].pk, threshold, True)
            print(
                f"{size} | DBSCAN: n x n matrix {size * size * 4 / 2**30:.0f} GB as float32 | - | - | "
                f"{tg_s:.2f} / {tg_mb:.0f} ({len(guarded)} clusters) | load average {os.getloadavg()[0]:.1f}"
            )
        if large:
            similar_latency(spaces[large[-1]], large[-1])


def similar_latency(space: EmbeddingSpace, size: int, lookups: int = 200) -> None:
    """`GET /api/tags/{id}/similar/?k=10`'s work (the HNSW query and the tags), for random tags of the space."""
    ids = list(Tag.objects.filter(embeddings__space=space).values_list("pk", flat=True))
    rng = np.random.default_rng(0)
    tags = list(Tag.objects.filter(pk__in=rng.choice(ids, lookups, replace=False).tolist()))
    times = []
    for tag in tags:
        started = time.perf_counter()
        services.similar_tags(tag, 10, space)
        times.append((time.perf_counter() - started) * 1000)
    p50, p95 = np.percentile(times, [50, 95])
    print(f"similar tags (k=10) at {size} tags: p50 {p50:.1f} ms, p95 {p95:.1f} ms over {lookups} lookups")


if __name__ == "__main__":
    main()
