"""The OpenAI-compatible client against a real loopback server, for every fault it must survive or report."""

import base64
import io
import socket
import time

import httpx
import pytest
import respx
from PIL import Image

from tagsite.ai.base import (
    EndpointConfig,
    LLMInvalidOutput,
    LLMModelNotFound,
    LLMRateLimited,
    LLMTruncated,
    LLMUnavailable,
)
from tagsite.ai.openai_compat import OpenAICompatClient, retry_after_seconds
from tests.llm_server import OFF_ENUM, OpenAITestServer, embedding

SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["cat", "dog"]}},
    "required": ["label"],
    "additionalProperties": False,
}


@pytest.fixture
def server():
    with OpenAITestServer(hang_seconds=3) as server:
        server.chat_rule = lambda body: {"label": "cat"}
        yield server


def client_for(url: str, **options) -> OpenAICompatClient:
    config = EndpointConfig(name="test", base_url=url, model="test-model", timeout=options.pop("timeout", 5))
    return OpenAICompatClient(config, backoff=0.05, **options)


def ask(client: OpenAICompatClient):
    return client.chat_json("You label pets.", "What is this?", SCHEMA, name="pet")


def test_structured_round_trip_sends_json_schema(server):
    with client_for(server.url) as client:
        assert ask(client) == {"label": "cat"}
        assert client.list_models() == ["test-model"]
    body = server.chat_requests()[0]
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "pet", "strict": True, "schema": SCHEMA},
    }
    assert body["model"] == "test-model"
    assert body["messages"][0] == {"role": "system", "content": "You label pets."}


def test_429_waits_for_retry_after_then_succeeds(server):
    server.inject("429")
    with client_for(server.url) as client:
        started = time.monotonic()
        assert ask(client) == {"label": "cat"}
    assert time.monotonic() - started >= 1.0  # Retry-After: 1 honoured
    assert len(server.chat_requests()) == 2


def test_retry_after_longer_than_allowed_is_reported_not_waited(server):
    server.retry_after = 3600
    server.inject("429")
    with client_for(server.url, max_retry_after=60) as client, pytest.raises(LLMRateLimited, match="3600s"):
        ask(client)


def test_500_is_retried_then_succeeds(server):
    server.inject("500", "500")
    with client_for(server.url) as client:
        assert ask(client) == {"label": "cat"}
    assert len(server.chat_requests()) == 3


def test_persistent_500_fails_with_the_reason_after_all_attempts(server):
    server.inject(*["500"] * 4)
    with client_for(server.url, attempts=4) as client, pytest.raises(LLMUnavailable, match="HTTP 500.*4 attempts"):
        ask(client)
    assert len(server.chat_requests()) == 4


def test_a_hang_past_the_timeout_is_retried(server):
    server.inject("hang")
    with client_for(server.url, timeout=0.5) as client:
        started = time.monotonic()
        assert ask(client) == {"label": "cat"}
    assert time.monotonic() - started < 3  # did not wait for the hung request


def test_invalid_json_is_reported_with_the_raw_answer(server):
    server.inject("invalid_json")
    with client_for(server.url) as client, pytest.raises(LLMInvalidOutput, match="not valid JSON") as caught:
        ask(client)
    assert caught.value.raw.startswith("Sure!")


def test_truncated_answer_is_reported_as_truncation(server):
    server.inject("truncated")
    with client_for(server.url) as client, pytest.raises(LLMTruncated, match="finish_reason=length"):
        ask(client)


def test_answer_outside_the_enum_fails_validation_but_keeps_the_data(server):
    server.inject("off_enum")
    with client_for(server.url) as client, pytest.raises(LLMInvalidOutput, match="label") as caught:
        ask(client)
    assert caught.value.data == {"label": OFF_ENUM}


def test_unknown_model_is_reported_clearly(server):
    server.models = ["other-model"]
    with client_for(server.url) as client, pytest.raises(LLMModelNotFound, match="test-model"):
        ask(client)


def test_server_down_is_reported_after_retries():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with client_for(f"http://127.0.0.1:{port}/v1", attempts=2) as client:
        with pytest.raises(LLMUnavailable, match="cannot connect"):
            ask(client)


def test_images_travel_as_downscaled_jpeg_data_urls(server, tmp_path):
    path = tmp_path / "big.png"
    Image.new("RGBA", (2000, 1000), (10, 200, 30, 255)).save(path)
    with client_for(server.url) as client:
        ask_with_image = client.chat_json("sys", "describe", SCHEMA, images=[path])
    assert ask_with_image == {"label": "cat"}
    content = server.chat_requests()[0]["messages"][1]["content"]
    assert content[0] == {"type": "text", "text": "describe"}
    url = content[1]["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert (sent.format, sent.size) == ("JPEG", (1280, 640))


def test_embeddings_come_back_in_input_order(server):
    """The server lists them in reverse: each row's index says which text it belongs to."""
    with client_for(server.url) as client:
        vectors = client.embed(["blue eyes", "red hair"])
    assert vectors == [embedding("blue eyes"), embedding("red hair")] and len(vectors[0]) == 8
    assert server.embed_requests() == [{"model": "test-model", "input": ["blue eyes", "red hair"]}]


@pytest.mark.parametrize("faults", [["429"], ["500", "500"], ["hang"]])
def test_embedding_transport_faults_are_retried(server, faults):
    server.inject(*faults)
    with client_for(server.url, timeout=0.5) as client:
        assert client.embed(["a"]) == [embedding("a")]
    assert len(server.embed_requests()) == len(faults) + 1


@pytest.mark.parametrize(
    ("setup", "error", "message"),
    [
        (lambda server: server.inject("missing_item"), LLMUnavailable, "1 embeddings for 2 texts"),
        (lambda server: setattr(server, "models", ["other"]), LLMModelNotFound, "embeddings answered 404"),
        (lambda server: server.inject(*["500"] * 4), LLMUnavailable, "HTTP 500.*4 attempts"),
    ],
)
def test_embedding_failures_are_reported(server, setup, error, message):
    setup(server)
    with client_for(server.url) as client, pytest.raises(error, match=message):
        client.embed(["a", "b"])


@respx.mock
def test_api_key_is_sent_as_bearer_token():
    route = respx.get("http://llm.test/v1/models").mock(return_value=httpx.Response(200, json={"data": []}))
    config = EndpointConfig(name="t", base_url="http://llm.test/v1", model="m", api_key="sk-secret")
    with OpenAICompatClient(config) as client:
        client.list_models()
    assert route.calls.last.request.headers["authorization"] == "Bearer sk-secret"


def test_retry_after_accepts_seconds_and_http_dates():
    assert retry_after_seconds("2") == 2.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert retry_after_seconds(None) is None
