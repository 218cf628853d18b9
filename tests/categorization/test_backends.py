"""The categorisation command on every kind of backend the registry offers."""

import pytest
from django.core.management import call_command

from categorization.models import CategoryProposal
from tests.ai.test_roles import MODEL, SERVERS, point_role_at
from tests.categorization.conftest import make_tags
from tests.llm_server import categorize_rule


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_the_categorize_command_runs_on_every_backend_kind(kind, monkeypatch):
    """A categorize role on a Gemini endpoint crashed: `with client_for(...)` on a client without `__enter__`."""
    names = ["blue_eyes", "running", "smile"]
    make_tags(*names)
    with SERVERS[kind](models=[MODEL]) as server:
        server.chat_rule = categorize_rule({"blue_eyes": "03_Body_Face", "running": "09_Action"}.get)
        point_role_at(monkeypatch, "categorize", kind, server)
        call_command("llm_auto_categorize_tags", limit=3, verbosity=0)
        assert len(server.chat_requests()) == 2  # the preflight's round trip, then one request for the three tags
    proposed = dict(CategoryProposal.objects.values_list("tag__name", "category__code"))
    assert set(proposed) == set(names)
    assert proposed["blue_eyes"] == "03_Body_Face" and proposed["running"] == "09_Action"
