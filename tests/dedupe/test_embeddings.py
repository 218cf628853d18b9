"""The local MiniLM backend (offline default of the embed role) and embed_tags: stored vectors, staleness,
resumability, the HNSW index and similar-tag lookups."""

import numpy as np
import pytest
from django.core.management import call_command
from django.db import connection

from dedupe import services
from dedupe.models import TagEmbedding
from tagsite.ai.local_embeddings import LocalMiniLM
from tagsite.ai.registry import check_endpoint, client_for_role, resolve_role
from tagsite.models import LLMRole, Tag
from tests.dedupe.conftest import embed_all, make_tags


def test_vectors_are_unit_length_and_do_not_depend_on_the_batch():
    """Length-bucketed batches pad each batch to its own longest text: the padding must not change a vector."""
    texts = ["cat", "very long hair with a ribbon and flowers", "dslr", "digital single lens reflex camera"]
    together = LocalMiniLM(batch_size=3).embed_array(texts)
    alone = np.stack([LocalMiniLM().embed_array([text])[0] for text in texts])
    assert together.shape == (4, 384)
    assert np.allclose(np.linalg.norm(together, axis=1), 1, atol=1e-5)
    assert np.allclose(together, alone, atol=1e-4)
    smile, smiling, car = LocalMiniLM().embed_array(["smile", "smiling", "car"])
    assert smile @ smiling > smile @ car + 0.3


@pytest.mark.django_db
def test_the_embed_role_is_the_local_model_offline():
    LLMRole.objects.filter(role="embed").delete()
    config = resolve_role("embed")
    assert config.kind == "local"
    with client_for_role("embed") as client:
        assert len(client.embed(["red hair"])[0]) == 384
    assert [check.ok for check in check_endpoint(config, "embed")] == [True, True, True]


@pytest.mark.django_db
def test_embed_tags_stores_only_what_is_missing_or_stale_and_builds_the_index(space):
    cat, dog, kitten = make_tags("cat", "dog", "kitten")
    assert services.embed_tags(LocalMiniLM(), space, limit=2) == {"embedded": 2}  # the rest waits for the next run
    assert services.embed_tags(LocalMiniLM(), space) == {"embedded": 1}
    assert services.embed_tags(LocalMiniLM(), space) == {"embedded": 0}
    Tag.objects.filter(pk=kitten.pk).update(display_name="kitty cat")  # renamed without a save signal (bulk)
    assert services.stale_tags(space) == [(kitten.pk, "kitty cat")]
    embed_all(space)
    assert TagEmbedding.objects.get(tag=kitten).text == "kitty cat"
    dog.display_name = "Doggo"
    dog.save()  # the local model re-embeds a renamed tag at once
    assert TagEmbedding.objects.get(tag=dog).text == "Doggo" and services.stale_tags(space) == []
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", [space.index_name])
        assert "hnsw" in cursor.fetchone()[0]
    nearest = services.similar_tags(cat, k=2)
    assert [s.tag for s in nearest] == [kitten, dog] and nearest[0].similarity > nearest[1].similarity


@pytest.mark.django_db
def test_a_tag_not_embedded_yet_gets_neighbours_at_once(space):
    make_tags("cat", "dog", "car")
    embed_all(space)
    (kitten,) = make_tags("kitten")
    assert services.similar_tags(kitten, k=1)[0].tag.name == "cat"
    assert services.similar_to_text("automobile", k=1)[0].tag.name == "car"
    meant = [item.tag.name for item in services.similar_to_text("puppy", k=3)]
    assert meant[0] == "dog" and "car" not in meant  # the nearest three, less what means something else


@pytest.mark.django_db
def test_embed_tags_command(capsys):
    make_tags("cat", "dog")
    call_command("embed_tags")
    out = capsys.readouterr().out
    assert "Embedded 2 tags" in out and "2 tags have a vector in this space (active)" in out
    call_command("embed_tags")
    assert "Embedded 0 tags" in capsys.readouterr().out


@pytest.mark.django_db(transaction=True)
def test_the_neighbour_search_split_over_sessions_finds_the_same_pairs(space, monkeypatch):
    """Outside a transaction the tags are split over one database session per core (committed data only)."""
    make_tags("cat", "kitten", "dog", "puppy", "car", "automobile", "red_hair", "crimson_hair")
    embed_all(space)
    alone = services.neighbour_pairs(space, 0.5)
    monkeypatch.setattr(services, "PARALLEL_TAGS", 2)
    monkeypatch.setattr(services.os, "sched_getaffinity", lambda pid: {0, 1, 2})
    split = services.neighbour_pairs(space, 0.5)
    assert sorted(split) == sorted(alone) and len(alone) >= 3
