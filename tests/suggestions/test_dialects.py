"""The three structured-output dialects: the client probes each endpoint once, uses the strictest form it takes,
and `llm_check` shows which; the answers are validated whatever the dialect."""

import pytest
from django.core.management import call_command

from tagsite.ai import openai_compat
from tagsite.ai.base import EndpointConfig, LLMInvalidOutput
from tagsite.ai.openai_compat import PROMPT_SCHEMA_LEAD, forget_structured_outputs
from tagsite.ai.registry import client_for
from tests.llm_server import OpenAITestServer

pytestmark = pytest.mark.django_db
SCHEMA = {
    "type": "object",
    "properties": {"caption": {"type": "string", "minLength": 3}},
    "required": ["caption"],
    "additionalProperties": False,
}
EXPECTED = {"json_schema": "json_schema", "json_object": "json_object", "none": "schema_in_prompt"}


@pytest.mark.parametrize("dialect", sorted(EXPECTED))
def test_the_probe_finds_what_the_server_takes_and_requests_use_it(dialect):
    with OpenAITestServer(models=["m"]) as server:
        server.dialect = dialect
        server.chat_rule = lambda body: {"caption": "a red car"}
        with client_for(EndpointConfig(name="t", base_url=server.url, model="m")) as client:
            assert client.structured_output() == EXPECTED[dialect]
            assert client.chat_json("Describe.", "What is it?", SCHEMA) == {"caption": "a red car"}
            assert client.chat_json("Describe.", "What is it?", SCHEMA) == {"caption": "a red car"}
        probes = [body.get("response_format", {}).get("type") for _, body in server.probes]
        assert probes == {"json_schema": ["json_schema"], "json_object": ["json_schema"] * 2 + ["json_object"],
                          "none": ["json_schema", "json_object"]}[dialect]  # fmt: skip
        (request, _) = server.chat_requests()
        form = request.get("response_format")
        if dialect == "json_schema":
            assert form["json_schema"]["schema"] == SCHEMA
        elif dialect == "json_object":
            assert form == {"type": "json_object", "schema": SCHEMA}
        else:
            assert form is None and PROMPT_SCHEMA_LEAD in request["messages"][0]["content"]


def test_an_answer_off_the_schema_in_the_prompt_dialect_is_refused_and_fences_are_read():
    with OpenAITestServer(models=["m"]) as server:
        server.dialect = "none"
        with client_for(EndpointConfig(name="t", base_url=server.url, model="m")) as client:
            server.chat_rule = lambda body: {"title": "wrong key"}
            with pytest.raises(LLMInvalidOutput):
                client.chat_json("Describe.", "What is it?", SCHEMA)
            server.chat_rule = lambda body: {"caption": "a red car"}
            server.inject("fenced")
            assert client.chat_json("Describe.", "What is it?", SCHEMA) == {"caption": "a red car"}


def test_a_passing_500_does_not_downgrade_the_endpoint():
    with OpenAITestServer(models=["m"]) as server:
        forget_structured_outputs()
        server.inject("500")  # the probe takes no fault: this one hits the first real request, which is retried
        with client_for(EndpointConfig(name="t", base_url=server.url, model="m"), backoff=0.01) as client:
            assert client.structured_output() == "json_schema"
            assert client.chat_json("Describe.", "What is it?", SCHEMA) == {"caption": "test"}


def test_a_server_swapped_behind_the_same_url_is_probed_again(monkeypatch):
    with OpenAITestServer(models=["m"]) as server:
        server.chat_rule = lambda body: {"caption": "a red car"}
        with client_for(EndpointConfig(name="t", base_url=server.url, model="m")) as client:
            assert client.structured_output() == "json_schema"
            server.dialect = "json_object"  # say llama.cpp's server now listens on LM Studio's port
            assert client.structured_output() == "json_schema"  # cached: no probe per request
            monkeypatch.setattr(openai_compat, "PROBE_SECONDS", 0.0)  # as if ten minutes had passed
            assert client.structured_output() == "json_object"
            monkeypatch.setattr(openai_compat, "PROBE_SECONDS", 600.0)
            assert client.chat_json("Describe.", "What is it?", SCHEMA) == {"caption": "a red car"}
        assert len(server.probes) == 4  # json_schema; then json_schema twice (a 500 is asked twice), json_object


@pytest.mark.parametrize("dialect", ["json_object", "none"])
def test_llm_check_shows_the_dialect(dialect, monkeypatch, capsys):
    with OpenAITestServer(models=["m"]) as server:
        server.dialect = dialect
        monkeypatch.setenv("TAGSITE_LLM_CAPTION_URL", server.url)
        monkeypatch.setenv("TAGSITE_LLM_CAPTION_MODEL", "m")
        call_command("llm_check", "caption")
    assert f"✓ structured output: {EXPECTED[dialect]} round trip" in capsys.readouterr().out
