"""Every role the apps declare, on every kind of backend, through the registry, against the loopback servers."""

import pytest
from PIL import Image

from tagsite.ai.base import LLMInvalidOutput
from tagsite.ai.registry import check_endpoint, client_for_role, resolve_role
from tagsite.features import llm_roles
from tests.llm_server import GeminiTestServer, OpenAITestServer, embedding

SERVERS = {"openai": OpenAITestServer, "gemini": GeminiTestServer}
MODEL = "role-test-model"
SCHEMA = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["cat", "dog"]}, "score": {"type": "number"}},
    "required": ["label", "score"],
    "additionalProperties": False,
}


def point_role_at(monkeypatch, role: str, kind: str, server) -> None:
    prefix = f"TAGSITE_LLM_{role.upper()}_"
    monkeypatch.setenv("TEST_LLM_KEY", "test-key")
    for key, value in {"URL": server.url, "KIND": kind, "MODEL": MODEL, "API_KEY_ENV": "TEST_LLM_KEY"}.items():
        monkeypatch.setenv(prefix + key, value)


def sent_images(kind: str, body: dict) -> list[str]:
    """The images a chat request carried: data URLs (OpenAI-compatible) or inline data MIME types (Gemini)."""
    if kind == "openai":
        return [part["image_url"]["url"][:23] for part in body["messages"][1]["content"] if "image_url" in part]
    inline = [part["inlineData"] for part in body["contents"][0]["parts"] if "inlineData" in part]
    return [data.get("mimeType") or data.get("mime_type") for data in inline]  # protobuf JSON takes either


def test_the_apps_declare_chat_and_embedding_roles():
    assert llm_roles() == {
        "categorize": "chat", "emotion": "chat", "embed": "embed",
        "title": "chat", "caption": "chat", "keywords": "chat", "description": "chat",
    }  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize("kind", sorted(SERVERS))
@pytest.mark.parametrize("role", sorted(llm_roles()))
def test_every_role_on_every_backend_kind(role, kind, monkeypatch):
    with SERVERS[kind](models=[MODEL]) as server:
        point_role_at(monkeypatch, role, kind, server)
        checks = check_endpoint(resolve_role(role), role)
        assert [check.ok for check in checks] == [True, True, True], checks
        with client_for_role(role, attempts=1) as client:
            if llm_roles()[role] == "embed":
                assert client.embed(["red hair", "blue eyes"]) == [embedding("red hair"), embedding("blue eyes")]
                assert checks[-1].name == "embedding" and len(server.embed_requests()) == 2
                assert not server.chat_requests()
                return
            server.chat_rule = lambda body: {"label": "dog", "score": 0.75}
            picture = Image.new("RGB", (64, 48), "orange")
            assert client.chat_json("You label pets.", "Which pet?", SCHEMA, images=[picture]) == {
                "label": "dog",
                "score": 0.75,
            }
            assert checks[-1].name == "structured output"
            expected = {"openai": ["data:image/jpeg;base64,"], "gemini": ["image/jpeg"]}[kind]
            assert sent_images(kind, server.chat_requests()[-1]) == expected


@pytest.mark.django_db
@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_a_chat_answer_outside_the_schema_is_refused_on_every_backend_kind(kind, monkeypatch):
    with SERVERS[kind](models=[MODEL]) as server:
        point_role_at(monkeypatch, "categorize", kind, server)
        server.chat_rule = lambda body: {"label": "parrot", "score": 0.5}
        with client_for_role("categorize", attempts=1) as client, pytest.raises(LLMInvalidOutput, match="label"):
            client.chat_json("s", "u", SCHEMA)
