"""The clustering rules on hand-made vectors: lexical keys, the sibling and category guards, complete linkage
(no chains), must-not-merge pairs, the representative."""

import numpy as np
import pytest

from dedupe.clustering import TagInfo, cluster_tags, lexical_key, pair_scores, siblings


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("DSLR", "dslr"),
        ("Outdoor", "outdoors"),
        ("black & white", "black_and_white"),
        ("t-shirt", "T Shirt"),
        ("café", "cafe"),
        ("cherry_blossoms", "cherry blossom"),
        ("butterflies", "butterfly"),
    ],
)
def test_lexical_keys_join_spellings(a, b):
    assert lexical_key(a) == lexical_key(b)


@pytest.mark.parametrize(
    ("a", "b"), [("glasses", "glass"), ("status", "statu"), ("long_hair", "hair"), (":p", ";p"), ("^_^", "^-^")]
)
def test_lexical_keys_keep_different_words_apart(a, b):
    assert lexical_key(a) != lexical_key(b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("black_hair", "white_hair"),
        ("indoors", "outdoors"),
        ("left_hand", "right_hand"),
        ("1girl", "2girls"),
        ("long_hair", "very_long_hair"),
        ("hat", "no_hat"),
        ("cat", "dog"),
        ("hair", "long_hair"),
        ("large_breasts", "medium_breasts"),
        ("skirt", "overall_skirt"),  # a narrower tag, not the same one
        ("sitting", "sitting_on_object"),
    ],
)
def test_siblings_are_recognised(a, b):
    assert siblings(a, b)


@pytest.mark.parametrize(("a", "b"), [("dslr", "digital_slr"), ("smile", "smiling"), ("outdoor", "outdoors")])
def test_duplicates_are_not_siblings(a, b):
    assert not siblings(a, b)


def unit(*rows) -> np.ndarray:
    array = np.asarray(rows, dtype=np.float32)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


def run(tags, vectors, pairs, **options):
    lookup = {t.id: vectors[i] for i, t in enumerate(tags)}
    return cluster_tags(tags, pairs, lambda ids: np.stack([lookup[pk] for pk in ids]), **options)


def cosine(vectors, i, j) -> float:
    return float(vectors[i] @ vectors[j])


def test_complete_linkage_refuses_a_chain():
    """a~b and b~c are above the threshold, a~c is not: only one of the pairs merges (DBSCAN would chain)."""
    angle = np.radians(20)
    vectors = unit([1, 0], [np.cos(angle), np.sin(angle)], [np.cos(2 * angle), np.sin(2 * angle)])
    tags = [TagInfo(1, "sea", 5), TagInfo(2, "ocean", 3), TagInfo(3, "lake", 1)]
    pairs = [(1, 2, cosine(vectors, 0, 1)), (2, 3, cosine(vectors, 1, 2)), (1, 3, cosine(vectors, 0, 2))]
    assert pairs[0][2] > 0.9 > pairs[2][2]
    clusters = run(tags, vectors, pairs, threshold=0.9)
    assert len(clusters) == 1 and len(clusters[0].members) == 2
    assert clusters[0].excluded  # the third is shown as a near tag, not merged


def test_guards_category_siblings_and_blocked_pairs():
    vectors = unit([1, 0.01], [1, 0.02], [1, 0.03], [1, 0.04], [1, 0.05], [1, 0.06])
    tags = [
        TagInfo(1, "black_hair", 10),
        TagInfo(2, "white_hair", 9),
        TagInfo(3, "saber", 8, danbooru_category=4),  # a character
        TagInfo(4, "sabre", 7),
        TagInfo(5, "sword", 6),
        TagInfo(6, "blade", 5),
    ]
    pairs = [(a, b, 0.99) for a in range(1, 7) for b in range(a + 1, 7)]
    clusters = run(tags, vectors, pairs, threshold=0.9, blocked={(5, 6)})
    grouped = [sorted(t.id for t in c.members) for c in clusters]
    assert all(not {1, 2} <= set(g) for g in grouped)  # siblings apart
    assert all(3 not in g for g in grouped)  # the character merges into no general tag
    assert all(not {5, 6} <= set(g) for g in grouped)  # a human kept them apart
    unguarded = run(tags, vectors, pairs, threshold=0.9, guards=False)
    assert sorted(t.id for t in unguarded[0].members) == [1, 2, 3, 4, 5, 6]


def test_lexical_and_alias_groups_and_the_representative():
    vectors = unit([1, 0], [0, 1], [1, 1], [1, -1])
    tags = [TagInfo(1, "Outdoor", 3), TagInfo(2, "outdoors", 40), TagInfo(3, "dslr", 5), TagInfo(4, "digital_slr", 5)]
    clusters = run(tags, vectors, [], threshold=0.9, alias_targets={"digitalsinglelensreflex": 9, "digitalslr": 3})
    by_rep = {c.representative.name: c for c in clusters}
    assert set(by_rep) == {"outdoors", "dslr"}  # most used; then the shorter name
    assert by_rep["outdoors"].reasons[1] == "lexical" and by_rep["dslr"].reasons[4] == "alias"


def test_pair_scores():
    assert pair_scores([[1, 2, 3]], [[1, 2], [3, 4]]) == {
        "pairs_found": 3,
        "pairs_true": 2,
        "precision": 1 / 3,
        "recall": 0.5,
    }
