"""Dedupe on the other embedding backends, end to end against the loopback servers: seed 001's `--embedding-url`
(an OpenAI-compatible `/v1/embeddings`, LM Studio's nomic model with its `clustering: ` prefix) and Gemini as the
`embed` role. The servers give the seed's DSLR / Digital SLR one direction only when the prefix is sent, so a
cluster joined by embedding proves the vectors came from the server, through the recipe, into the index."""

import json

import numpy as np
import pytest
from django.core.management import call_command

from dedupe.models import EmbeddingSpace, MergeProposal, TagEmbedding
from tests.dedupe.conftest import make_tags
from tests.llm_server import GeminiTestServer, OpenAITestServer

pytestmark = pytest.mark.django_db

NOMIC = "text-embedding-nomic-embed-text-v1.5"
MEANING = {  # unit vectors: DSLR and Digital SLR 0.98 apart, the rest orthogonal to everything
    "DSLR": [1, 0, 0, 0, 0, 0, 0, 0],
    "Digital SLR": [0.98, 0.199, 0, 0, 0, 0, 0, 0],
    "Film Camera": [0, 0, 1, 0, 0, 0, 0, 0],
    "Tripod": [0, 0, 0, 1, 0, 0, 0, 0],
}


def rule(prefix: str):
    """The server's vectors: what MEANING says for `prefix` + a name, a direction of their own for any other text."""

    def embed(text: str) -> list[float]:
        if text.startswith(prefix) and text[len(prefix) :] in MEANING:
            return MEANING[text[len(prefix) :]]
        return [0, 0, 0, 0, 0, 0, 0, 1] if text.endswith("test") else [0, 0, 0, 0, 0.6, 0.8, 0, 0]

    return embed


def library() -> None:
    make_tags("DSLR", "Digital SLR", "Film Camera", "Tripod", usage=1)


def assert_one_embedding_cluster(report_path, model: str) -> None:
    report = json.loads(report_path.read_text())
    assert report["model"].startswith(model) and report["clusters_found"] == 1
    (cluster,) = report["clusters"]
    assert {(m["tag"], m["reason"]) for m in cluster["members"]} == {
        ("dslr", "representative"),
        ("digital_slr", "embedding"),
    }
    assert cluster["members"][1]["similarity"] == pytest.approx(0.98, abs=0.005)


def test_dedupe_tags_with_embedding_url_and_the_nomic_prefix(tmp_path, capsys):
    library()
    report = tmp_path / "report.json"
    with OpenAITestServer(models=[NOMIC]) as server:
        server.embed_rule = rule("clustering: ")
        call_command(
            "dedupe_tags",
            "--embedding-url",
            f"http://127.0.0.1:{server.port}",  # as LM Studio's address is given; /v1 is added
            "--embedding-model",
            NOMIC,
            "--prefix",
            "clustering: ",
            "--report",
            str(report),
        )
    sent = [text for body in server.embed_requests() for text in body["input"]]
    assert all(body["model"] == NOMIC for body in server.embed_requests())
    assert sorted(sent) == ["clustering: DSLR", "clustering: Digital SLR", "clustering: Film Camera"] + [
        "clustering: Tripod",
        "clustering: test",  # the dimension probe
    ]
    space = EmbeddingSpace.objects.get(active=True)
    assert (space.dimensions, space.prefix, space.endpoint["kind"]) == (8, "clustering: ", "openai")
    stored = TagEmbedding.objects.get(space=space, tag__name="digital_slr")
    assert stored.text == "clustering: Digital SLR"
    assert np.allclose(np.asarray(stored.embedding, dtype=float)[:2], [0.98, 0.199], atol=1e-3)
    assert_one_embedding_cluster(report, NOMIC)
    proposal = MergeProposal.objects.get()
    assert (proposal.representative_name, proposal.status) == ("dslr", "pending")
    assert "1 merge proposals to review" in capsys.readouterr().out


def test_embed_tags_and_dedupe_tags_on_gemini_as_the_embed_role(tmp_path, monkeypatch, admin_client):
    library()
    report = tmp_path / "report.json"
    with GeminiTestServer(models=["gemini-embedding-001"]) as server:
        server.embed_rule = rule("")
        monkeypatch.setenv("TEST_GEMINI_KEY", "test-key")
        for key, value in {"URL": server.url, "KIND": "gemini", "MODEL": "gemini-embedding-001"}.items():
            monkeypatch.setenv(f"TAGSITE_LLM_EMBED_{key}", value)
        monkeypatch.setenv("TAGSITE_LLM_EMBED_API_KEY_ENV", "TEST_GEMINI_KEY")
        call_command("embed_tags", "--activate")
        call_command("dedupe_tags", "--dry-run", "--report", str(report))
    assert all(
        request["model"] == "models/gemini-embedding-001"
        for body in server.embed_requests()
        for request in body["requests"]
    )
    space = EmbeddingSpace.objects.get(active=True)
    assert (space.dimensions, space.endpoint["kind"], space.embeddings.count()) == (8, "gemini", 4)
    assert_one_embedding_cluster(report, "gemini-embedding-001")
    assert not MergeProposal.objects.exists()  # a dry run
    dslr = space.embeddings.get(tag__name="dslr").tag
    similar = admin_client.get(f"/api/tags/{dslr.pk}/similar/", {"k": 1}).json()
    assert [(row["name"], round(row["similarity"], 2)) for row in similar] == [("digital_slr", 0.98)]
