"""The google-genai client against a loopback server speaking Gemini's REST format."""

import time

import pytest

from tagsite.ai.base import EndpointConfig, LLMError, LLMModelNotFound, LLMQuotaExhausted, LLMUnavailable
from tagsite.ai.gemini import GeminiClient
from tests.llm_server import GeminiTestServer, embedding

SCHEMA = {
    "type": "object",
    "properties": {"emotion": {"type": "string", "enum": ["happy", "sad"]}},
    "required": ["emotion"],
}


@pytest.fixture
def server():
    with GeminiTestServer(models=["gemini-test-flash"]) as server:
        server.chat_rule = lambda body: {"emotion": "happy"}
        yield server


def client_for(server, model="gemini-test-flash") -> GeminiClient:
    config = EndpointConfig(name="gemini", kind="gemini", base_url=server.url, model=model, api_key="test-key")
    return GeminiClient(config, initial_delay=0.05, max_delay=0.1)


def test_generate_content_round_trip_with_json_schema(server):
    client = client_for(server)
    assert client.chat_json("Label the face.", "Which emotion?", SCHEMA) == {"emotion": "happy"}
    assert client.list_models() == ["gemini-test-flash"]
    body = server.chat_requests()[0]
    assert body["generationConfig"]["responseMimeType"] == "application/json"
    assert body["generationConfig"]["responseJsonSchema"] == SCHEMA
    assert body["systemInstruction"]["parts"][0]["text"] == "Label the face."


def test_exhausted_daily_quota_is_reported_and_not_retried(server):
    server.inject("quota_daily", "quota_daily", "quota_daily")
    with pytest.raises(LLMQuotaExhausted, match="daily quota exhausted.*PerDay"):
        client_for(server).chat_json("s", "u", SCHEMA)
    assert len(server.chat_requests()) == 1


def test_per_minute_rate_limit_waits_the_retry_delay_then_succeeds(server):
    server.inject("rate_minute")
    started = time.monotonic()
    assert client_for(server).chat_json("s", "u", SCHEMA) == {"emotion": "happy"}
    assert time.monotonic() - started >= 1.0
    assert len(server.chat_requests()) == 2


def test_server_errors_are_retried_by_the_sdk(server):
    server.inject("500", "500")
    assert client_for(server).chat_json("s", "u", SCHEMA) == {"emotion": "happy"}
    assert len(server.chat_requests()) == 3


def test_retired_model_is_reported_by_name(server):
    with pytest.raises(LLMModelNotFound, match="'gemini-1.0-pro' is not available"):
        client_for(server, model="gemini-1.0-pro").chat_json("s", "u", SCHEMA)


def test_missing_api_key_is_a_configuration_error(server):
    config = EndpointConfig(name="gemini", kind="gemini", base_url=server.url, model="gemini-test-flash")
    with pytest.raises(LLMError, match="needs an API key"):
        GeminiClient(config)


@pytest.mark.django_db(transaction=True)
def test_requests_in_flight_are_capped_at_the_endpoints_parallel_slots():
    """Gemini endpoints hold the same cross-process slots as OpenAI-compatible ones."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    from tagsite.ai import registry

    with GeminiTestServer(models=["gemini-test-flash"], latency=0.2) as server:
        server.chat_rule = lambda body: {"emotion": "happy"}
        config = EndpointConfig(
            name="gemini", kind="gemini", base_url=server.url, model="gemini-test-flash", api_key="k", max_parallel=2
        )

        def ask(_):
            try:
                return registry.client_for(config).chat_json("s", "u", SCHEMA)
            finally:
                connection.close()  # each thread's own database session holds its slot

        with ThreadPoolExecutor(6) as pool:
            assert list(pool.map(ask, range(6))) == [{"emotion": "happy"}] * 6
        assert server.max_in_flight == 2


def test_embeddings_one_vector_per_text_in_order_batched_by_100():
    texts = [f"tag number {i}" for i in range(150)]
    with GeminiTestServer(models=["gemini-embedding-001"]) as server:
        vectors = client_for(server, model="gemini-embedding-001").embed(texts)
        assert vectors == [embedding(text) for text in texts]
        assert [len(body["requests"]) for body in server.embed_requests()] == [100, 50]
        assert server.embed_requests()[0]["requests"][0]["model"] == "models/gemini-embedding-001"


def test_embeddings_of_a_multimodal_model_stay_one_per_text():
    """Given bare strings, the SDK would merge them into one content for a multimodal `gemini-*` model."""
    with GeminiTestServer(models=["gemini-embedding-2"]) as server:
        assert client_for(server, model="gemini-embedding-2").embed(["red hair", "blue eyes"]) == [
            embedding("red hair"),
            embedding("blue eyes"),
        ]


@pytest.mark.parametrize(
    ("faults", "error", "message"),
    [
        (["quota_daily"], LLMQuotaExhausted, "daily quota exhausted"),
        (["missing_item"], LLMUnavailable, "1 embeddings for 2 texts"),
    ],
)
def test_embedding_faults_are_reported(faults, error, message):
    with GeminiTestServer(models=["gemini-embedding-001"]) as server:
        server.inject(*faults)
        with pytest.raises(error, match=message):
            client_for(server, model="gemini-embedding-001").embed(["a", "b"])


def test_embedding_server_errors_and_rate_limits_are_retried():
    with GeminiTestServer(models=["gemini-embedding-001"]) as server:
        server.inject("500", "rate_minute")
        assert client_for(server, model="gemini-embedding-001").embed(["a"]) == [embedding("a")]
        assert len(server.embed_requests()) == 3


def test_embeddings_of_an_unknown_model_name_it(server):
    with pytest.raises(LLMModelNotFound, match="'text-embedding-9' is not available"):
        client_for(server, model="text-embedding-9").embed(["a"])
