"""Labelled tags near a tag: the prompt's examples and the kNN first pass of the categoriser.

Retrieval is one function type, `Retriever(names, k) -> {name: [Neighbour, ...]}`, so the dedupe app's
tag embeddings can replace the lexical index below without touching the categoriser. Whatever retrieves,
a tag is never its own neighbour: a labelled tag with the same name is skipped.
"""

import csv
import heapq
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

# The 300 most used Danbooru general tags, labelled by hand with the boundary rules of the prompt.
LABELLED_FILE = Path(__file__).resolve().parent / "data" / "categories_labelled.csv"
POSTING_LIMIT = 100  # names kept per feature of the index


@dataclass(frozen=True)
class Example:
    """A tag whose category a person decided."""

    name: str
    code: str


@dataclass(frozen=True)
class Neighbour:
    example: Example
    similarity: float  # 0..1


Retriever = Callable[[list[str], int], dict[str, list[Neighbour]]]


def read_labelled(path: Path = LABELLED_FILE) -> list[Example]:
    """A `tag,category` CSV (header first) as examples; blank rows are skipped."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = csv.DictReader(handle)
        if not rows.fieldnames or not {"tag", "category"} <= set(rows.fieldnames):
            raise ValueError(f"{path}: expected the columns tag,category, found {rows.fieldnames}")
        return [Example(row["tag"].strip(), row["category"].strip()) for row in rows if row["tag"].strip()]


def features(name: str) -> Counter:
    """Words, the last word again (the head noun decides: `red_hair` is hair, `hair_ribbon` a ribbon), and
    character trigrams of the words (so `thighhighs` meets `kneehighs`)."""
    words = [word for word in re.split(r"[_\s()\-:]+", name.casefold()) if word]
    found: Counter = Counter({f"w:{word}": 2.0 for word in words})
    if words:
        found[f"h:{words[-1]}"] = 3.0
    for word in words:
        padded = f" {word} "
        found.update(f"c:{padded[i : i + 3]}" for i in range(len(padded) - 2))
    return found


class LexicalIndex:
    """TF-IDF cosine similarity over `features`, with an inverted index: the fallback until tag
    embeddings exist. On the 300 labelled tags its kNN vote alone is right about half the time."""

    def __init__(self, examples: Iterable[Example]):
        self.examples = list({example.name: example for example in examples}.values())
        counts = [features(example.name) for example in self.examples]
        documents = Counter(feature for count in counts for feature in count)
        total = len(self.examples) or 1
        self.idf = {feature: math.log((1 + total) / (1 + n)) + 1 for feature, n in documents.items()}
        self.postings: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for index, count in enumerate(counts):
            vector = self.vector(count)
            for feature, weight in vector.items():
                self.postings[feature].append((index, weight))
        # A feature shared by thousands of names keeps only its strongest (shortest) names: a lookup then
        # costs the same whatever the number of categorised tags.
        for feature, posting in self.postings.items():
            if len(posting) > POSTING_LIMIT:
                self.postings[feature] = sorted(posting, key=lambda item: -item[1])[:POSTING_LIMIT]

    def vector(self, count: Counter) -> dict[str, float]:
        weights = {feature: n * self.idf.get(feature, 0.0) for feature, n in count.items()}
        norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
        return {feature: w / norm for feature, w in weights.items() if w}

    def __call__(self, names: list[str], k: int) -> dict[str, list[Neighbour]]:
        found = {}
        for name in names:
            scores: dict[int, float] = defaultdict(float)
            for feature, weight in self.vector(features(name)).items():
                for index, other in self.postings.get(feature, ()):
                    scores[index] += weight * other
            ranked = heapq.nsmallest(k + 1, scores.items(), key=lambda item: (-item[1], self.examples[item[0]].name))
            found[name] = [
                Neighbour(self.examples[index], min(1.0, score))
                for index, score in ranked
                if self.examples[index].name != name
            ][:k]
        return found


def knn_vote(neighbours: list[Neighbour]) -> tuple[str, float]:
    """The neighbours' category weighted by similarity, and a strength in 0..1: the winner's share of the
    weight times the best similarity (one close neighbour says more than many distant ones). ("", 0) for none."""
    weights: dict[str, float] = defaultdict(float)
    for neighbour in neighbours:
        weights[neighbour.example.code] += neighbour.similarity
    total = sum(weights.values())
    if not total:
        return "", 0.0
    code = max(weights, key=lambda c: (weights[c], c))
    return code, weights[code] / total * max(n.similarity for n in neighbours)
