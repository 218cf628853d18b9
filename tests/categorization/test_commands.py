"""The management commands, end to end against the loopback server."""

import socket
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from categorization.models import CachedAnswer, CategoryProposal
from tagsite.models import Job
from tests.categorization.conftest import make_tags

NAMES = ["1girl", "blue_eyes", "smile", "running", "long_hair"]


def run(*args, **options) -> str:
    out = StringIO()
    call_command(*args, stdout=out, **options)
    return out.getvalue()


def test_llm_auto_categorize_tags_prints_seed_000s_session(llm):
    make_tags(*NAMES)
    output = run("llm_auto_categorize_tags", "--batch-size", "2", "--limit", "4", verbosity=2)
    assert "Testing LLM connection..." in output and "✓ structured output" in output
    assert "Total processed: 4" in output and "Successful: 4" in output and "Success rate: 100.0%" in output
    assert CategoryProposal.objects.count() == 4
    job = Job.objects.get(kind="categorize")
    assert job.status == "succeeded" and job.current == 4 and "success rate 100.0%" in job.message


def test_verbose_mode_prints_a_line_per_tag(llm, capsys):
    make_tags(*NAMES)
    run("llm_auto_categorize_tags", "--limit", "2", verbosity=2)
    lines = capsys.readouterr().out  # tqdm.write goes to the process's stdout
    assert "1girl (used 5x) ✓ 00_Subject_Count (0." in lines and "blue_eyes (used 4x) ✓ 03_Body_Face (0." in lines


def test_dry_run_and_the_short_alias(llm):
    make_tags(*NAMES)
    output = run("categorize_tags", "--dry-run", "--skip", "1")
    assert "DRY RUN MODE" in output and "Total processed: 4" in output and "No changes were saved" in output
    assert not CategoryProposal.objects.exists() and not CachedAnswer.objects.exists() and not Job.objects.exists()


@pytest.mark.parametrize("command", ["categorize_tags", "llm_auto_categorize_tags"])
def test_nothing_to_do_says_so(llm, command):
    """No uncategorised tag (or --skip past all of them): no run, no Job, no LLM call, no "Success rate: 0.0%"."""
    output = run(command)
    assert output.strip() == "Nothing to do: no uncategorised tags (none without a category or a proposal)."
    make_tags(*NAMES)
    output = run(command, "--skip", "5")
    assert output.startswith("Nothing to do: no uncategorised tags after skipping 5") and "Success rate" not in output
    assert not Job.objects.exists() and not llm.chat_requests()


@pytest.mark.parametrize(
    "option, value", [("--limit", "-1"), ("--skip", "-3"), ("--batch-size", "0"), ("--request-size", "-2")]
)
def test_negative_counts_are_usage_errors(llm, option, value):
    make_tags(*NAMES)
    with pytest.raises(CommandError, match=f"argument {option}: must be [01] or more, not {value}"):
        run("llm_auto_categorize_tags", option, value)
    assert not Job.objects.exists() and not llm.chat_requests()


@pytest.mark.parametrize("command", ["categorize_tags", "llm_auto_categorize_tags"])
def test_an_unknown_role_is_a_command_error(llm, command):
    make_tags(*NAMES)
    out = StringIO()
    with pytest.raises(CommandError, match="unknown role 'categorise'; roles are .*categorize"):
        call_command(command, "--role", "categorise", stdout=out)
    assert out.getvalue() == "" and not Job.objects.exists() and not llm.chat_requests()


def test_unreachable_server_says_what_to_fix(monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("TAGSITE_LLM_CATEGORIZE_URL", f"http://127.0.0.1:{port}/v1")
    make_tags(*NAMES)
    with pytest.raises(CommandError, match="Failed to connect to LLM: .*cannot connect.*Start the server"):
        run("llm_auto_categorize_tags")
    assert not Job.objects.exists()


def test_llm_check_passes_and_reports_a_missing_model_with_what_is_served(llm, monkeypatch):
    assert "✓ structured output" in run("llm_check", "categorize")
    monkeypatch.setenv("TAGSITE_LLM_CATEGORIZE_MODEL", "mistral-7b")
    out = StringIO()
    with pytest.raises(CommandError, match="LLM check failed for: categorize"):
        call_command("llm_check", "categorize", stdout=out)
    assert "✗ model listed: 'mistral-7b' is not served (listed: test-model)" in out.getvalue()


def test_list_registry_shows_roles_with_their_overrides(llm):
    output = run("list_registry")
    assert "local" in output and "http://127.0.0.1:1234/v1" in output
    assert "categorize   -> local" in output and llm.url in output and "TAGSITE_LLM_CATEGORIZE_URL" in output
