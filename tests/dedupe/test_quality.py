"""Dedupe quality on real data: the Danbooru alias sets of the sample (each alias written as its own tag must end
in one cluster with its tag) and sibling pairs that must stay apart. Prints pairwise precision and recall."""

import pytest

from dedupe import services
from dedupe.clustering import pair_scores
from tagsite.services.tags import normalize_tag_name
from tests.dedupe.conftest import embed_all, make_tags, sample_rows

# Pairs that embeddings score high but that must never merge: colours, sides, numbers, sizes, antonyms.
SIBLINGS = [
    ("black_hair", "white_hair"),
    ("blue_eyes", "green_eyes"),
    ("red_dress", "blue_dress"),
    ("indoors", "outdoors"),
    ("day", "night"),
    ("left_hand", "right_hand"),
    ("looking_left", "looking_right"),
    ("1girl", "2girls"),
    ("1boy", "2boys"),
    ("long_hair", "very_long_hair"),
    ("short_hair", "long_hair"),
    ("open_mouth", "closed_mouth"),
    ("open_eyes", "closed_eyes"),
    ("large_breasts", "small_breasts"),
    ("hat", "no_hat"),
    ("cat", "dog"),
    ("sunrise", "sunset"),
    ("thighhighs", "black_thighhighs"),
    ("arms_up", "arms_down"),
    ("smile", "frown"),
]


def alias_sets(rows: int) -> list[list[str]]:
    """Groups of normalised names (the tag, then its aliases) from the sample's first `rows` rows with aliases;
    an alias that is itself another row's tag is left out (it is not the same tag in this list), and so are
    Danbooru's search shortcuts (`/lav`), which no library carries as a tag."""
    sample = sample_rows()
    names = {normalize_tag_name(name) for name, _, _, _ in sample}
    groups, seen = [], set()
    for name, _category, _posts, aliases in sample:
        key = normalize_tag_name(name)
        others = [
            a
            for a in dict.fromkeys(normalize_tag_name(a) for a in aliases)
            if a and not a.startswith("/") and a not in names | seen
        ]
        if others and key not in seen:
            groups.append([key, *others])
            seen.update([key, *others])
        if len(groups) == rows:
            break
    return groups


@pytest.mark.django_db
def test_alias_sets_merge_and_siblings_stay_apart(space):
    groups = alias_sets(200)
    for group in groups:  # the tag is the most used of its group, as in a real library
        make_tags(group[0], usage=100)
        make_tags(*group[1:], usage=1)
    make_tags(*{name for pair in SIBLINGS for name in pair}, usage=50)
    embed_all(space)
    ids = dict(space.embeddings.values_list("tag__name", "tag_id"))
    truth = [[ids[name] for name in group] for group in groups]
    results = {}
    for threshold in (services.DEFAULT_THRESHOLD, services.RECOMMENDED_THRESHOLD):
        clusters = services.find_clusters(space, threshold=threshold)
        found = [[t.id for t in c.members] for c in clusters]
        score = pair_scores(found, truth)
        merged = [pair for pair in SIBLINGS if any({ids[pair[0]], ids[pair[1]]} <= set(c) for c in found)]
        cluster_of = {pk: i for i, c in enumerate(found) for pk in c}
        joined = sum(cluster_of.get(g[0], -1) == cluster_of.get(a, -2) for g in truth for a in g[1:])
        lexical = pair_scores([[t.id for t in c.members if c.reasons[t.id] != "embedding"] for c in clusters], truth)
        results[threshold] = (score, lexical, merged)
        print(
            f"\nthreshold {threshold}: {len(groups)} alias sets ({score['pairs_true']} pairs), {len(ids)} tags: "
            f"precision {score['precision']:.3f}, recall {score['recall']:.3f} "
            f"(lexical and alias signals alone: recall {lexical['recall']:.3f}); aliases that joined their tag: "
            f"{joined} of {sum(len(g) - 1 for g in truth)}; sibling pairs merged: {merged}"
        )
    for score, lexical, merged in results.values():
        assert merged == []
        assert score["recall"] > lexical["recall"]  # embeddings add what the keys miss
        assert score["precision"] >= 0.8
