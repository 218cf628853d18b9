"""The registry: roles resolve to endpoints with environment overrides; slots cap requests across connections."""

import threading
from dataclasses import replace

import pytest
from django.db import connections

from tagsite.ai import registry
from tagsite.ai.base import ChatBackend, EndpointConfig, LLMError
from tagsite.ai.gemini import GeminiClient
from tagsite.ai.registry import client_for, resolve_role
from tagsite.features import llm_roles
from tagsite.models import LLMEndpoint, LLMRole
from tests.llm_server import OpenAITestServer


@pytest.fixture
def local(db):
    """The migration's default endpoint (recreated: a transactional test elsewhere may have flushed it)."""
    endpoint, _ = LLMEndpoint.objects.get_or_create(name="local", defaults={"model": "local-model"})
    for role in llm_roles():
        LLMRole.objects.get_or_create(role=role, defaults={"endpoint": endpoint})
    return endpoint


def test_roles_default_to_lm_studio_on_loopback(local):
    config = resolve_role("categorize")
    assert (config.name, config.kind, config.base_url, config.model) == (
        "local",
        "openai",
        "http://127.0.0.1:1234/v1",
        "local-model",
    )


def test_role_model_and_environment_override_the_row(local, monkeypatch):
    LLMRole.objects.filter(role="emotion").update(model="qwen2.5-vl-7b")
    assert resolve_role("emotion").model == "qwen2.5-vl-7b"
    monkeypatch.setenv("TAGSITE_LLM_EMOTION_URL", "http://127.0.0.1:8000/v1")
    monkeypatch.setenv("TAGSITE_LLM_EMOTION_MAX_PARALLEL", "8")
    config = resolve_role("emotion")
    assert (config.base_url, config.max_parallel, config.model) == ("http://127.0.0.1:8000/v1", 8, "qwen2.5-vl-7b")


def test_api_key_is_read_from_the_named_variable_and_never_stored(local, monkeypatch):
    gemini = LLMEndpoint.objects.create(
        name="gemini", kind="gemini", base_url="", model="gemini-2.5-flash", api_key_env="TEST_GEMINI_KEY"
    )
    LLMRole.objects.filter(role="categorize").update(endpoint=gemini)
    monkeypatch.setenv("TEST_GEMINI_KEY", "secret-value")
    config = resolve_role("categorize")
    assert config.api_key == "secret-value" and config.kind == "gemini"
    assert isinstance(client_for(config), GeminiClient)
    assert "secret-value" not in str(LLMEndpoint.objects.filter(pk=gemini.pk).values().get())


def test_unknown_or_unconfigured_roles_say_what_to_do(local):
    with pytest.raises(LLMError, match="unknown role 'painting'"):
        resolve_role("painting")
    LLMRole.objects.filter(role="categorize").delete()
    with pytest.raises(LLMError, match="set TAGSITE_LLM_CATEGORIZE_URL"):
        resolve_role("categorize")
    LLMRole.objects.filter(role="embed").delete()  # embeddings fall back to the offline local model
    assert resolve_role("embed").kind == "local"


@pytest.mark.django_db
def test_slots_cap_requests_across_database_sessions():
    """Each thread has its own database session, as each worker process does; the cap holds across them."""
    with OpenAITestServer(latency=0.1) as server:
        config = EndpointConfig(name="capped", base_url=server.url, model="test-model", max_parallel=2)

        def work():
            try:
                with client_for(config) as client:
                    for _ in range(3):
                        client.list_models()
            finally:
                connections.close_all()

        threads = [threading.Thread(target=work) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert server.max_in_flight == 2


class ChatOnly(ChatBackend):
    """A backend that chats but has no embeddings, as a kind of endpoint may."""

    def __init__(self, config, *, slot=None):
        self.config = config

    def list_models(self):
        return [self.config.model]

    def close(self):
        pass

    def chat_json(self, system, user, schema, *, name="answer", images=()):
        return {}


def test_a_role_is_refused_an_endpoint_whose_backend_lacks_its_capability(monkeypatch):
    monkeypatch.setitem(registry.BACKENDS, "chatonly", f"{__name__}.ChatOnly")
    config = EndpointConfig(name="lab", kind="chatonly", base_url="http://127.0.0.1:9/v1", model="m")
    assert isinstance(client_for(config, "chat"), ChatOnly)
    with pytest.raises(LLMError, match="lab: a chatonly endpoint offers no embed"):
        client_for(config, "embed")
    with pytest.raises(LLMError, match="unknown endpoint kind 'anthropic'; kinds are openai, gemini, local, chatonly"):
        client_for(replace(config, kind="anthropic"))
