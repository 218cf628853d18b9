"""Near-duplicate tag clusters from three signals: lexical keys, known aliases and embedding similarity.

Lexical keys alone merge about half of the true duplicates with no false merge; embeddings find most of the
rest but also score siblings and antonyms high ("indoors"/"outdoors", "black hair"/"white hair" 0.6-0.9). So:

- lexical and alias groups are joined first (same Danbooru category only);
- embedding edges come from the HNSW index (k nearest per tag, never an n x n matrix) and join groups by
  complete linkage: two groups join only when every cross pair is within the threshold (the cluster's
  diameter is bounded, so no chain "a~b~c" puts a next to c);
- a pair whose names differ only by a colour, number, side, size or negation word, or where one name adds
  words to the other, is never joined by embedding alone (`siblings`); only general tags join by embedding
  (names of artists, series and characters are spelling, not meaning); the Danbooru category must match, and
  must-not-merge pairs never join.

The module is pure: it takes the tags, the neighbour pairs and a vector lookup, so the bench and the tests run
it on the same data as `dedupe_tags`.
"""

import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

COLOURS = set(
    "black white red blue green yellow orange purple pink brown grey gray silver gold golden blonde aqua "
    "beige cyan magenta teal violet lavender navy crimson multicolored rainbow two-tone light dark pale".split()
)
NUMBERS = set(
    "one two three four five six seven eight nine ten single double triple multiple many no "
    "first second third fourth fifth sixth last ii iii iv".split()
)
# Names of artists, series, characters and meta tags are spelling, not meaning: MiniLM scores `akaza_akari` and
# `akaza_akane` 0.93. Only general tags join by embedding; the others by lexical keys and aliases.
EMBEDDING_CATEGORIES = frozenset({0})
SIDES = set("left right up down top bottom front back upper lower inner outer side".split())
NEGATIONS = set("no not non without un".split())
# Antonyms and sizes score as high as true duplicates (PRODUCT.md's field notes): never merged by embedding alone.
OPPOSITES = set(
    "indoors outdoors indoor outdoor inside outside open closed day night male female boy girl man woman "
    "before after full empty wet dry hot cold old young new big small medium large tiny huge long short tall "
    "very thick thin wide narrow light heavy happy sad on off in out under over above below with "
    "morning evening sunrise sunset summer winter spring autumn fall cat dog".split()
)
GUARD_WORDS = COLOURS | NUMBERS | SIDES | NEGATIONS | OPPOSITES
SPELLINGS = {"grey": "gray", "colour": "color", "blond": "blonde", "favourite": "favorite"}  # one word, two spellings
_WORDS = re.compile(r"[^\w]+|_+")
_DIGITS = re.compile(r"\d+")


def words(name: str) -> list[str]:
    """The words of a name: accents stripped, casefolded, `&` read as `and`."""
    text = unicodedata.normalize("NFKD", name.replace("&", " and "))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    return [SPELLINGS.get(word, word) for word in _WORDS.split(text) if word]


def symbolic(name: str) -> bool:
    """Kaomoji and symbols (fewer than two letters or digits: `:p`, `;p`, `^_^`): their punctuation is the tag."""
    return sum(ch.isalnum() for ch in name) < 2


def singular(word: str) -> str:
    """A cautious singular: `ies` -> `y`, a final `s` dropped, but not after `s`, `u` or `i` (`glasses`,
    `status`, `bikinis` stay), so a plural never lands on a different word."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is", "es")):
        return word[:-1]
    return word


def lexical_key(name: str) -> str:
    """Names with the same key are the same tag written differently: case, spaces/underscores/hyphens,
    punctuation, accents, `&`/`and`, British/American spelling, a plural last word. Symbolic names keep theirs."""
    found = words(name)
    if not found or symbolic(name):
        return name.casefold()
    found[-1] = singular(found[-1])
    return "".join(found)


def order_key(name: str) -> str:
    """The same words in another order (`closed_eyes`/`eyes_closed`, `hyuuga_hinata`/`hinata_hyuuga`): words
    sorted, none singularised (`arms_up` and `arm_up` are different tags). Empty for one-word names."""
    found = words(name)
    return " ".join(sorted(found)) if len(found) > 1 and not symbolic(name) else ""


def siblings(a: str, b: str) -> bool:
    """Names that differ only by a guard word (colour, number, side, size, negation, an antonym) or a number:
    `black_hair`/`white_hair`, `1girl`/`2girls`, `left_hand`/`right_hand`; or where one adds words to the other,
    a narrower tag (`skirt`/`overall_skirt`, `sitting`/`sitting_on_object`, `navel`/`outie_navel`)."""
    wa, wb = [singular(w) for w in words(a)], [singular(w) for w in words(b)]
    if wa != wb and [_DIGITS.sub("#", w) for w in wa] == [_DIGITS.sub("#", w) for w in wb]:
        return True
    if set(wa) < set(wb) or set(wb) < set(wa):
        return True
    diff = set(wa) ^ set(wb)
    return bool(diff) and all(word in GUARD_WORDS or word.isdigit() for word in diff)


@dataclass
class TagInfo:
    id: int
    name: str
    usage_count: int = 0
    danbooru_category: int = 0


@dataclass
class Cluster:
    representative: TagInfo
    members: list[TagInfo]  # the representative first
    similarity: dict[int, float]  # member id -> cosine similarity to the representative
    reasons: dict[int, str]  # member id -> lexical, alias or embedding (the representative: "representative")
    excluded: list[tuple[TagInfo, float]] = field(default_factory=list)  # near tags left out, best first

    @property
    def confidence(self) -> float:
        return min(self.similarity.values())


def representative(members: Iterable[TagInfo]) -> TagInfo:
    """Seed 001's choice: most used, then shortest, then alphabetical."""
    return min(members, key=lambda t: (-t.usage_count, len(t.name), t.name))


class _Groups:
    """Union-find over tag ids, each group remembering its members (for complete-linkage checks)."""

    def __init__(self, ids: Iterable[int]):
        self.parent = {pk: pk for pk in ids}
        self.members = {pk: [pk] for pk in self.parent}

    def find(self, pk: int) -> int:
        while self.parent[pk] != pk:
            self.parent[pk] = self.parent[self.parent[pk]]
            pk = self.parent[pk]
        return pk

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if len(self.members[ra]) < len(self.members[rb]):
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.members[ra] += self.members.pop(rb)


def cluster_tags(
    tags: list[TagInfo],
    pairs: Iterable[tuple[int, int, float]],
    vectors: Callable[[list[int]], np.ndarray],
    *,
    threshold: float,
    alias_targets: dict[str, int] | None = None,
    blocked: set[tuple[int, int]] | None = None,
    min_cluster_size: int = 2,
    guards: bool = True,
    lexical: bool = True,
) -> list[Cluster]:
    """Clusters of `tags` from lexical keys, known aliases (`alias_targets`: lexical key of an alias name -> the
    tag id it names) and embedding `pairs` (a, b, cosine similarity; from the index's nearest neighbours; pairs
    below the threshold only become a cluster's `excluded` near tags).

    `vectors(ids)` gives unit vectors (rows in the ids' order) for the complete-linkage checks and the
    similarities reported. `blocked` holds must-not-merge pairs (smaller id first). `guards=False` and
    `lexical=False` turn the sibling guard and the lexical signal off (the bench compares with plain DBSCAN).
    """
    by_id = {t.id: t for t in tags}
    blocked = blocked or set()
    groups = _Groups(by_id)
    reasons: dict[int, str] = {}

    def allowed(a: int, b: int) -> bool:
        if (min(a, b), max(a, b)) in blocked:
            return False
        return not guards or by_id[a].danbooru_category == by_id[b].danbooru_category

    def group_allowed(ra: int, rb: int) -> bool:
        return all(allowed(a, b) for a in groups.members[ra] for b in groups.members[rb])

    if lexical:
        keys: dict[str, int] = {}
        for tag in tags:
            key = lexical_key(tag.name)
            if alias_targets and key in alias_targets and alias_targets[key] in by_id:
                target = alias_targets[key]
                if target != tag.id and group_allowed(groups.find(tag.id), groups.find(target)):
                    groups.union(tag.id, target)
                    reasons[tag.id] = reasons[target] = "alias"
            for signal in (f"k:{key}", f"o:{order_key(tag.name)}"):
                if signal == "o:":
                    continue
                other = keys.setdefault(signal, tag.id)
                if other != tag.id and group_allowed(groups.find(tag.id), groups.find(other)):
                    groups.union(tag.id, other)
                    reasons.setdefault(tag.id, "lexical")
                    reasons.setdefault(other, "lexical")

    pairs = [(a, b, sim) for a, b, sim in pairs if a in by_id and b in by_id and a != b]
    edges = sorted(((sim, a, b) for a, b, sim in pairs if sim >= threshold), reverse=True)
    cache: dict[int, np.ndarray] = {}
    candidates = sorted({pk for _, a, b in edges for pk in (a, b)})
    if candidates:
        for pk, row in zip(candidates, vectors(candidates), strict=True):
            cache[pk] = row

    def vector_rows(ids: list[int]) -> np.ndarray:
        missing = [pk for pk in ids if pk not in cache]
        if missing:
            for pk, row in zip(missing, vectors(missing), strict=True):
                cache[pk] = row
        return np.stack([cache[pk] for pk in ids])

    for _, a, b in edges:
        ra, rb = groups.find(a), groups.find(b)
        if ra == rb:
            continue
        if guards and (
            by_id[a].danbooru_category not in EMBEDDING_CATEGORIES or siblings(by_id[a].name, by_id[b].name)
        ):
            continue
        left, right = groups.members[ra], groups.members[rb]
        if not group_allowed(ra, rb):
            continue
        if guards and any(siblings(by_id[x].name, by_id[y].name) for x in left for y in right):
            continue
        if (vector_rows(left) @ vector_rows(right).T).min() < threshold:
            continue  # complete linkage: every cross pair within the threshold
        groups.union(a, b)
        for pk in (a, b):
            reasons.setdefault(pk, "embedding")

    neighbours: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for a, b, sim in pairs:  # the band below the threshold too: what a moderator may add
        neighbours[a].append((b, sim))
        neighbours[b].append((a, sim))
    clusters = []
    for ids in groups.members.values():
        if len(ids) < max(min_cluster_size, 2):
            continue
        members = [by_id[pk] for pk in ids]
        rep = representative(members)
        rows = vector_rows([t.id for t in members]) if any(t.id in cache for t in members) else None
        similarity = {}
        for index, tag in enumerate(members):
            if tag.id == rep.id:
                similarity[tag.id] = 1.0
            elif rows is not None and tag.id in cache and rep.id in cache:
                similarity[tag.id] = float(rows[index] @ cache[rep.id])
            else:
                similarity[tag.id] = 1.0  # joined by its key or an alias, not by a vector
        members.sort(key=lambda t: (t.id != rep.id, -similarity[t.id], t.name))
        inside = set(ids)
        near: dict[int, float] = {}
        for pk in ids:
            for other, sim in neighbours.get(pk, ()):
                if other not in inside:
                    near[other] = max(near.get(other, 0.0), sim)
        excluded = sorted(((by_id[pk], sim) for pk, sim in near.items()), key=lambda item: -item[1])[:5]
        clusters.append(
            Cluster(
                rep,
                members,
                similarity,
                {t.id: ("representative" if t.id == rep.id else reasons.get(t.id, "embedding")) for t in members},
                excluded,
            )
        )
    clusters.sort(key=lambda c: (-sum(t.usage_count for t in c.members), c.representative.name))
    return clusters


def pair_scores(clusters: Iterable[Iterable[int]], truth: Iterable[Iterable[int]]) -> dict[str, float]:
    """Pairwise precision and recall of found clusters against true groups (ids): a pair counts when both ids
    are in one cluster. What the tests print on Danbooru alias sets."""

    def pairs(groups: Iterable[Iterable[int]]) -> set[tuple[int, int]]:
        found = set()
        for group in groups:
            ids = sorted(set(group))
            found.update((a, b) for i, a in enumerate(ids) for b in ids[i + 1 :])
        return found

    found, true = pairs(clusters), pairs(truth)
    hits = len(found & true)
    return {
        "pairs_found": len(found),
        "pairs_true": len(true),
        "precision": hits / len(found) if found else 1.0,
        "recall": hits / len(true) if true else 1.0,
    }
