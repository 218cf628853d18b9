"""A database filled at the schema before the review core migrates: model versions get producers, suggestions
name them, ReviewDecision rows become Decision rows, category proposals' free-text model becomes a producer and
their statuses the core's (auto-applied ones named by the auto-apply setting's rule)."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from categorization.models import CategoryProposal
from suggestions.models import MLModelVersion, TagSuggestion
from tagsite.models import AutoApproveRule, Decision, Producer

BEFORE = [
    ("tagsite", "0006_llm_roles_from_apps"),
    ("suggestions", "0003_review_turn_off_and_automatic_mappings"),
    ("categorization", "0003_tagcategory"),
]


@pytest.fixture
def latest_schema_after():
    """Whatever happens, the next test finds the latest schema (a flush at the old one would fail)."""
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_an_old_database_moves_onto_the_review_core(latest_schema_after):
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    User = old.get_model("auth", "User")
    mod = User.objects.create(username="mod", is_staff=True)
    tags = [old.get_model("tagsite", "Tag").objects.create(name=n, display_name=n) for n in ("smile", "hat", "cat")]
    image = old.get_model("tagsite", "Image").objects.create(path="/a.jpg", sha256="1" * 64)
    Version = old.get_model("suggestions", "MLModelVersion")
    versions = [
        Version.objects.create(
            name="wd", version=v, model_file=f"/m/{v}.onnx", labels_file="/l.csv", sha256="0", input_size=448,
            label_count=3,
        )
        for v in ("v1", "v2")
    ]  # fmt: skip
    Suggestion = old.get_model("suggestions", "TagSuggestion")
    made = [
        Suggestion.objects.create(image=image, tag=tag, model_version=version, external_tag=tag.name, confidence=0.5)
        for version in versions
        for tag in tags
    ]
    Suggestion.objects.filter(pk=made[0].pk).update(status="approved", reviewed_by=mod)
    Suggestion.objects.filter(pk=made[1].pk).update(status="rejected", reviewed_by=mod)
    Audit = old.get_model("suggestions", "ReviewDecision")
    Audit.objects.create(suggestion=made[0], status="rejected", user=mod, via="bulk")
    Audit.objects.create(suggestion=made[0], status="approved", user=mod, via="page")
    Audit.objects.create(suggestion=made[1], status="rejected", user=mod, via="api")
    Category = old.get_model("categorization", "ExtendedCategory")
    category = Category.objects.create(code="99_Test", name="test", description="a category", group="context")
    Proposal = old.get_model("categorization", "CategoryProposal")
    proposal = lambda tag, status, model="qwen", prompt="p1": Proposal.objects.create(  # noqa: E731
        tag=tag, category=category, confidence=0.8, model=model, prompt_version=prompt, status=status,
        reviewer=mod if status in ("accepted", "rejected") else None,
    )  # fmt: skip
    accepted, auto, rejected = proposal(tags[0], "accepted"), proposal(tags[1], "auto"), proposal(tags[2], "rejected")
    pending = proposal(tags[2], "pending", "llama", "p2")

    MigrationExecutor(connection).migrate(latest)

    for version in MLModelVersion.objects.all():
        assert (version.producer.kind, version.producer.name, version.producer.version) == (
            "onnx_tagger",
            "wd",
            version.version,
        )
        assert version.producer.model_file == version.model_file
        assert set(TagSuggestion.objects.filter(model_version=version).values_list("producer", flat=True)) == {
            version.producer_id
        }
    first = TagSuggestion.objects.get(pk=made[0].pk)
    assert (first.status, first.decided_by.username) == ("approved", "mod")
    audit = Decision.objects.filter(kind="tagsuggestion").order_by("created_at", "pk")
    assert [(d.object_id, d.previous, d.status, d.via) for d in audit] == [
        (made[0].pk, "pending", "rejected", "bulk"),
        (made[0].pk, "rejected", "approved", "page"),
        (made[1].pk, "pending", "rejected", "api"),
    ]
    statuses = dict(CategoryProposal.objects.values_list("pk", "status"))
    assert statuses == {
        accepted.pk: "approved",
        auto.pk: "auto_approved",
        rejected.pk: "rejected",
        pending.pk: "pending",
    }
    producers = dict(CategoryProposal.objects.values_list("pk", "producer__name"))
    assert producers[accepted.pk] == "qwen" and producers[pending.pk] == "llama"
    assert (
        Producer.objects.get(name="llama").prompt_version == "p2" and Producer.objects.filter(kind="chat").count() == 2
    )
    rule = AutoApproveRule.objects.get(name="TAGSITE_CATEGORIZE_AUTO_APPLY")
    decisions = {d.object_id: d for d in Decision.objects.filter(kind="categoryproposal")}
    assert set(decisions) == {accepted.pk, auto.pk, rejected.pk}
    assert decisions[auto.pk].rule == rule and decisions[auto.pk].via == "rule"
    assert decisions[accepted.pk].user.username == "mod" and decisions[accepted.pk].rule is None


@pytest.mark.django_db(transaction=True)
def test_the_review_core_migrations_reverse_and_reapply(latest_schema_after):
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(BEFORE)
    assert "suggestions_reviewdecision" in connection.introspection.table_names()
    MigrationExecutor(connection).migrate(latest)
    assert "suggestions_reviewdecision" not in connection.introspection.table_names()
    assert "producer_id" in {
        c.name
        for c in connection.introspection.get_table_description(connection.cursor(), "categorization_categoryproposal")
    }
