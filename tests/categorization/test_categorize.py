"""The LLM categoriser against the loopback server: batching, validation, re-asking, caching, faults."""

import pytest

from categorization.models import CachedAnswer, CategoryProposal, ExtendedCategory, TagCategory
from categorization.services import AUTO_APPLY_RULE, Prompt, categorize_uncategorized, reject_proposals
from tagsite.ai.registry import client_for, resolve_role
from tagsite.models import Decision, Job, Tag
from tagsite.services.jobs import create_job, run_job
from tests.categorization.conftest import KNOWN, chat_producer, make_tags
from tests.llm_server import OFF_ENUM

NAMES = ["1girl", "blue_eyes", "smile", "running", "long_hair", "outdoors", "sword", "from_above"]


def asked(server) -> list[list[str]]:
    """The tag names of each chat request (the keys of its answer's schema), in order."""
    return [list(body["response_format"]["json_schema"]["schema"]["properties"]) for body in server.chat_requests()]


def test_the_22_categories_come_from_the_migration():
    codes = list(ExtendedCategory.objects.values_list("code", flat=True))
    assert len(codes) == 22 and codes[0] == "00_Subject_Count" and codes[-1] == "21_Status"
    groups = {g: ExtendedCategory.objects.filter(group=g).count() for g in ("identity", "context", "technical")}
    assert groups == {"identity": 5, "context": 11, "technical": 6}
    assert ExtendedCategory.objects.get(code="03_Body_Face").description == "Eyes & face"


def test_many_tags_per_request_most_used_first_as_pending_proposals(llm, llm_client):
    make_tags(*NAMES)
    summary = categorize_uncategorized(llm_client, limit=8, request_size=3, auto_apply=False)
    assert (summary.processed, summary.successful, summary.failed, summary.requests) == (8, 8, 0, 3)
    assert sorted(asked(llm)) == sorted([NAMES[0:3], NAMES[3:6], NAMES[6:8]])
    body = llm.chat_requests()[0]
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["required"] == list(schema["properties"]) and schema["additionalProperties"] is False
    assert all(len(value["enum"]) == 22 for value in schema["properties"].values())
    proposals = {p.tag.name: p for p in CategoryProposal.objects.select_related("tag", "category", "knn_category")}
    assert proposals["blue_eyes"].category.code == "03_Body_Face"
    assert proposals["blue_eyes"].status == "pending" and proposals["blue_eyes"].producer.name == "test-model"
    # the labelled neighbours (other *_eyes tags) vote the same: agreement raises the confidence above 0.7
    assert proposals["blue_eyes"].knn_category.code == "03_Body_Face" and proposals["blue_eyes"].confidence > 0.7
    assert not TagCategory.objects.exists()  # waits for review


def test_auto_apply_sets_the_category_and_logs_it(llm, llm_client):
    make_tags(*NAMES[:4])
    categorize_uncategorized(llm_client, limit=4, request_size=10, auto_apply=True)
    assert dict(Tag.objects.values_list("name", "category_link__category__code")) == {
        name: KNOWN[name] for name in NAMES[:4]
    }
    assert set(CategoryProposal.objects.values_list("status", flat=True)) == {"auto_approved"}
    audit = Decision.objects.filter(kind="categoryproposal")  # every auto-approval names its rule
    assert audit.count() == 4 and set(audit.values_list("rule__name", "via", "previous")) == {
        (AUTO_APPLY_RULE, "rule", "pending")
    }


def test_dry_run_saves_nothing(llm, llm_client):
    make_tags(*NAMES)
    summary = categorize_uncategorized(llm_client, limit=8, dry_run=True, auto_apply=True)
    assert summary.successful == 8
    assert not CategoryProposal.objects.exists() and not CachedAnswer.objects.exists()
    assert not TagCategory.objects.exists()


@pytest.mark.parametrize("fault", ["off_enum", "missing_item"])
def test_only_the_invalid_or_missing_tag_is_asked_again(llm, llm_client, fault):
    make_tags(*NAMES[:5])
    llm.inject(fault)
    summary = categorize_uncategorized(llm_client, limit=5, request_size=5)
    assert summary.successful == 5 and summary.requests == 2
    assert len(asked(llm)[1]) == 1
    assert not CategoryProposal.objects.filter(category__code=OFF_ENUM).exists()


def test_invalid_json_is_asked_again(llm, llm_client):
    make_tags(*NAMES[:5])
    llm.inject("invalid_json")
    summary = categorize_uncategorized(llm_client, limit=5, request_size=5)
    assert (summary.successful, summary.requests) == (5, 2)


def test_truncated_answer_halves_the_batch(llm, llm_client):
    make_tags(*NAMES)
    llm.inject("truncated")
    summary = categorize_uncategorized(llm_client, limit=8, request_size=8)
    assert summary.successful == 8
    assert [len(names) for names in asked(llm)] == [8, 4, 4]


@pytest.mark.parametrize("fault", ["429", "500", "hang"])
def test_transport_faults_are_retried(llm, llm_client, fault):
    make_tags(*NAMES[:3])
    llm.inject(fault)
    summary = categorize_uncategorized(llm_client, limit=3)
    assert summary.successful == 3 and CategoryProposal.objects.count() == 3


def test_a_tag_still_invalid_after_3_attempts_fails_with_the_reason(llm, llm_client):
    make_tags("blue_eyes", "smile")
    llm.inject("off_enum", "off_enum", "off_enum")
    job = create_job("categorize")
    with run_job(job) as progress:
        summary = categorize_uncategorized(llm_client, limit=2, progress=progress)
    assert (summary.successful, summary.failed, summary.requests) == (1, 1, 3)
    failed = summary.failures[0]
    assert failed.tag.name == "blue_eyes" and "after 3 attempts" in failed.error
    assert f"at blue_eyes: '{OFF_ENUM}' is not one of" in failed.error
    job.refresh_from_db()
    assert job.errors[0]["item"] == "blue_eyes" and job.counts == {"successful": 1, "failed": 1}
    assert list(CategoryProposal.objects.values_list("tag__name", flat=True)) == ["smile"]


def test_server_down_fails_the_batch_and_writes_nothing(llm, llm_client):
    make_tags(*NAMES[:3])
    llm.inject(*["500"] * 4)
    summary = categorize_uncategorized(llm_client, limit=3)
    assert summary.failed == 3 and "HTTP 500" in summary.failures[0].error
    assert not CategoryProposal.objects.exists() and not CachedAnswer.objects.exists()


def test_answers_are_cached_by_name_model_and_prompt_version(llm, llm_client):
    make_tags(*NAMES[:4])
    categorize_uncategorized(llm_client, limit=4)
    CategoryProposal.objects.all().delete()  # back among the uncategorised
    assert CachedAnswer.objects.filter(prompt_version=Prompt.build().version).count() == 4
    summary = categorize_uncategorized(llm_client, limit=4)
    assert (summary.successful, summary.cached, summary.requests) == (4, 4, 0)
    assert len(llm.chat_requests()) == 1


def test_a_rejected_proposal_is_not_asked_again_by_the_same_model_and_prompt(llm, llm_client, admin_user):
    make_tags(*NAMES[:4])
    categorize_uncategorized(llm_client, limit=4)
    reject_proposals(CategoryProposal.objects.all(), admin_user)
    older_model = chat_producer("older-model", Prompt.build().version)
    CategoryProposal.objects.filter(tag__name="1girl").update(producer=older_model)
    CategoryProposal.objects.filter(tag__name="smile").update(producer=chat_producer("test-model", "older-prompt"))
    summary = categorize_uncategorized(llm_client, limit=4)
    assert summary.processed == 2 and summary.cached == 2  # only the tags another model or prompt rejected
    pending = CategoryProposal.objects.filter(status="pending").values_list("tag__name", flat=True)
    assert sorted(pending) == ["1girl", "smile"]
    assert categorize_uncategorized(llm_client, limit=4).processed == 0


def test_skip_and_limit_follow_usage_order(llm, llm_client):
    make_tags(*NAMES)
    categorize_uncategorized(llm_client, skip=2, limit=3)
    assert asked(llm) == [NAMES[2:5]]


def test_parallel_requests_fill_but_never_exceed_the_endpoint_slots(llm, monkeypatch):
    llm.latency = 0.15
    monkeypatch.setenv("TAGSITE_LLM_CATEGORIZE_MAX_PARALLEL", "3")
    make_tags(*[f"tag_{i}" for i in range(24)])
    with client_for(resolve_role("categorize")) as llm_client:
        summary = categorize_uncategorized(llm_client, limit=24, request_size=2)
    assert summary.successful == 24 and summary.requests == 12
    assert llm.max_in_flight == 3
    assert Job.objects.count() == 0  # the service itself makes no job; commands and tasks do
