from importlib import import_module

import pytest
from django.apps import apps

from categorization.models import TagCategory
from tagsite.ai.registry import client_for, resolve_role
from tagsite.models import LLMEndpoint, LLMRole, Producer, Tag
from tests.llm_server import OpenAITestServer, categorize_rule

# Seed 000's examples: what the test server answers for these names (others get a stable pick).
KNOWN = {"blue_eyes": "03_Body_Face", "running": "09_Action", "1girl": "00_Subject_Count", "smile": "11_Expression"}


def chat_producer(name: str = "m", prompt_version: str = "v") -> Producer:
    """The producer a chat model's proposals name (what `CategoryProposal.model` was before the review core)."""
    return Producer.objects.get_or_create(kind=Producer.Kind.CHAT, name=name, prompt_version=prompt_version)[0]


def category_of(tag: Tag) -> str | None:
    """The code of a tag's category as stored now, None when uncategorised."""
    return TagCategory.objects.filter(tag=tag).values_list("category__code", flat=True).first()


@pytest.fixture(autouse=True)
def categories(db):
    """The 22 categories of the data migration (a transactional test elsewhere may have flushed them)."""
    import_module("categorization.migrations.0002_categories").create_categories(apps, None)


@pytest.fixture
def llm(monkeypatch):
    """A loopback OpenAI-compatible server that categorises deterministically, set as the categorize role."""
    with OpenAITestServer(hang_seconds=3) as server:
        server.chat_rule = categorize_rule(KNOWN.get)
        monkeypatch.setenv("TAGSITE_LLM_CATEGORIZE_URL", server.url)
        monkeypatch.setenv("TAGSITE_LLM_CATEGORIZE_MODEL", "test-model")
        monkeypatch.setenv("TAGSITE_LLM_CATEGORIZE_TIMEOUT", "2")
        yield server


@pytest.fixture
def llm_client(llm):
    with client_for(resolve_role("categorize"), backoff=0.05) as client:
        yield client


def point_local_endpoint_at(server, max_parallel: int = 4) -> None:
    """For a worker process, which does not see this process's environment overrides."""
    endpoint, _ = LLMEndpoint.objects.update_or_create(
        name="local", defaults={"base_url": server.url, "model": "test-model", "max_parallel": max_parallel}
    )
    LLMRole.objects.update_or_create(role="categorize", defaults={"endpoint": endpoint, "model": ""})


def make_tags(*names: str) -> list[Tag]:
    """Tags used len(names)..1 times, so the first is the most used."""
    return Tag.objects.bulk_create(
        [Tag(name=name, display_name=name, usage_count=len(names) - i) for i, name in enumerate(names)]
    )
