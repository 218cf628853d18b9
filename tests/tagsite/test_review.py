"""The review core: one decide for every kind, correct under concurrency, exact undo, per-kind permissions,
auto-approve rules in the audit, the generic API and hub, and a throwaway kind in a few lines."""

import random
import threading
from importlib import import_module

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection, connections, models
from django.db.models import Count
from django.test.utils import CaptureQueriesContext

from categorization.models import CategoryProposal, ExtendedCategory, TagCategory
from suggestions.models import MLModelVersion, TagSuggestion
from suggestions.services import Candidate, create_suggestions
from tagsite import review
from tagsite.features import moderator_permissions
from tagsite.models import AutoApproveRule, Decision, Image, ImageTag, Producer, Proposal, Tag
from tagsite.review import ReviewKind
from tagsite.review import services as review_service
from tagsite.services.accounts import ensure_moderators_group
from tagsite.services.tags import add_tags, create_implication, get_or_create_tags

JSON = "application/json"


@pytest.fixture(autouse=True)
def categories(db):
    """The 22 categories of the data migration (a transactional test elsewhere may have flushed them)."""
    import_module("categorization.migrations.0002_categories").create_categories(apps, None)


def model_version(name: str = "wd-test", version: str = "v1") -> MLModelVersion:
    return MLModelVersion.objects.create(
        name=name, version=version, model_file=f"/models/{name}/{version}/model.onnx", labels_file="/x.csv",
        sha256="0" * 64, input_size=448, label_count=10,
    )  # fmt: skip


def image(n: int) -> Image:
    return Image.objects.create(path=f"/library/{n}.jpg", sha256=f"{n:064d}")


def suggest(model: MLModelVersion, per_image: dict[Image, dict[str, float]]) -> list[TagSuggestion]:
    """Suggestions as a tagging run stores them (implied tags come along with the best confidence)."""
    tags = get_or_create_tags({name for names in per_image.values() for name in names})
    create_suggestions(
        model,
        {
            img: {tags[name]: Candidate(name, 0, conf) for name, conf in names.items()}
            for img, names in per_image.items()
        },
    )
    return list(TagSuggestion.objects.filter(model_version=model).order_by("pk"))


def snapshot(img: Image) -> set[tuple[str, str]]:
    return set(ImageTag.objects.filter(image=img).values_list("tag__name", "source"))


def assert_counts_true() -> None:
    counted = dict(Tag.objects.annotate(n=Count("image_tags")).values_list("pk", "n"))
    assert dict(Tag.objects.values_list("pk", "usage_count")) == counted


def user(name: str, *permissions: str, moderator: bool = False):
    person = get_user_model().objects.create_user(name, password="pw-long-enough", is_staff=True)
    for dotted in permissions:
        app_label, codename = dotted.split(".")
        person.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    if moderator:
        person.groups.add(ensure_moderators_group())
    return person


@pytest.mark.django_db
def test_approve_then_reject_restores_the_image_exactly(admin_user):
    create_implication("cat_ears", "animal_ears")
    create_implication("animal_ears", "ears")
    create_implication("kemonomimi", "animal_ears")
    img, other = image(1), image(2)
    add_tags([img], ["kemonomimi", "smile"])  # by hand: animal_ears and ears are already implied by kemonomimi
    add_tags([other], ["smile"])
    before, other_before = snapshot(img), snapshot(other)
    first = suggest(model_version(), {img: {"cat_ears": 0.9, "tail": 0.8}, other: {"cat_ears": 0.7}})
    second = suggest(model_version("other-model"), {img: {"tail": 0.6}})  # another model agrees on tail
    create_implication("tail", "has_tail")  # after the suggestions: approving tail brings it as an implied tag

    ids = [s.pk for s in first + second]
    assert len(review_service.decide(kind="tagsuggestion", ids=ids, status="approved", user=admin_user, via="api")) == 6
    assert {("cat_ears", "model"), ("tail", "model"), ("has_tail", "implied")} <= snapshot(img)
    assert {("cat_ears", "model"), ("animal_ears", "model"), ("ears", "model")} <= snapshot(other)
    assert_counts_true()

    reject = [s.pk for s in first]
    review_service.decide(kind="tagsuggestion", ids=reject, status="rejected", user=admin_user, via="page")
    assert snapshot(other) == other_before  # implied tags the approval added are gone
    # kemonomimi keeps animal_ears; the other model keeps tail, and so has_tail
    assert snapshot(img) == before | {("tail", "model"), ("has_tail", "implied")}
    review_service.decide(kind="tagsuggestion", ids=[second[0].pk], status="rejected", user=admin_user, via="page")
    assert snapshot(img) == before
    assert_counts_true()
    audit = Decision.objects.filter(kind="tagsuggestion", object_id=first[0].pk).order_by("pk")
    assert [(d.previous, d.status, d.via) for d in audit] == [
        ("pending", "approved", "api"),
        ("approved", "rejected", "page"),
    ]


def test_a_decision_moves_usage_counts_last_so_popular_tags_are_locked_for_the_commit_alone(admin_user):
    """Approving and taking back lock the tags whose counts move; that is the last statement before the commit."""
    img = image(1)
    suggestions = suggest(model_version(), {img: {"smile": 0.9, "hat": 0.8}})
    ids = [s.pk for s in suggestions]
    for status in ("approved", "rejected"):
        with CaptureQueriesContext(connection) as queries:
            review_service.decide(kind="tagsuggestion", ids=ids, status=status, user=admin_user, via="api")
        statements = [query["sql"] for query in queries if not query["sql"].startswith(("SAVEPOINT", "RELEASE"))]
        moving = [n for n, sql in enumerate(statements) if sql.startswith("UPDATE tagsite_tag SET usage_count")]
        audit = max(n for n, sql in enumerate(statements) if 'INSERT INTO "tagsite_decision"' in sql)
        assert len(moving) == 1 and moving[0] > audit, statements
        assert_counts_true()


@pytest.mark.django_db
def test_a_rule_only_moves_pending_and_already_decided_is_skipped_and_audited(admin_user):
    img = image(1)
    suggestions = suggest(model_version(), {img: {"smile": 0.9, "hat": 0.4}})
    smile, hat = suggestions
    outcome = review_service.decide(kind="tagsuggestion", ids=[smile.pk], status="rejected", user=admin_user, via="api")
    assert outcome.changed == [smile.pk]
    again = review_service.decide(kind="tagsuggestion", ids=[smile.pk, 999999], status="rejected", via="api")
    assert again.changed == [] and again.skipped == [smile.pk] and again.missing == [999999]
    rule = AutoApproveRule.objects.create(name="everything", kind="tagsuggestion", min_confidence=0)
    assert review_service.auto_approve("tagsuggestion", TagSuggestion.objects.all()) == 1  # hat; smile was rejected
    hat.refresh_from_db()
    smile.refresh_from_db()
    assert (smile.status, hat.status, hat.via) == ("rejected", "auto_approved", "rule")
    assert Decision.objects.get(object_id=hat.pk, kind="tagsuggestion").rule == rule
    assert list(Decision.objects.filter(object_id=smile.pk).values_list("applied", flat=True).order_by("pk")) == [
        True, False,
    ]  # fmt: skip


@pytest.mark.django_db
def test_auto_approve_rules_are_data_and_named_in_the_audit(admin_user):
    wd, other = model_version(), model_version("other-model")
    strict = AutoApproveRule.objects.create(
        name="wd sure", kind="tagsuggestion", producer=wd.producer, min_confidence=0.8
    )
    AutoApproveRule.objects.create(name="off", kind="tagsuggestion", min_confidence=0, active=False)
    img = image(1)
    suggest(wd, {img: {"smile": 0.95, "hat": 0.5}})
    suggest(other, {img: {"tail": 0.99}})
    statuses = dict(TagSuggestion.objects.values_list("tag__name", "status"))
    assert statuses == {"smile": "auto_approved", "hat": "pending", "tail": "pending"}
    smile = TagSuggestion.objects.get(tag__name="smile")
    decision = Decision.objects.get(kind="tagsuggestion", object_id=smile.pk)
    assert (decision.rule, decision.via, decision.user, decision.applied) == (strict, "rule", None, True)
    assert ("smile", "model") in snapshot(img)

    category = ExtendedCategory.objects.get(code="11_Expression")
    llm = Producer.objects.create(kind=Producer.Kind.CHAT, name="qwen", prompt_version="p1")
    rule = AutoApproveRule.objects.create(name="qwen", kind="categoryproposal", producer=llm, min_confidence=0.9)
    sure = CategoryProposal.objects.create(tag=smile.tag, category=category, confidence=0.95, producer=llm)
    unsure = CategoryProposal.objects.create(
        tag=Tag.objects.get(name="hat"), category=category, confidence=0.5, producer=llm
    )
    review_service.auto_approve("categoryproposal", CategoryProposal.objects.all())
    assert CategoryProposal.objects.get(pk=sure.pk).status == "auto_approved"
    assert CategoryProposal.objects.get(pk=unsure.pk).status == "pending"
    assert Decision.objects.get(kind="categoryproposal", object_id=sure.pk).rule == rule
    assert TagCategory.objects.get(tag=smile.tag).category == category


@pytest.mark.django_db
def test_permissions_per_kind(client):
    suggestion = suggest(model_version(), {image(1): {"smile": 0.9}})[0]
    proposal = CategoryProposal.objects.create(
        tag=suggestion.tag, category=ExtendedCategory.objects.first(), confidence=0.9,
        producer=Producer.objects.create(kind=Producer.Kind.CHAT, name="m"),
    )  # fmt: skip
    tagger = user("tagger", "suggestions.review_tagsuggestion")
    client.force_login(tagger)
    decide = lambda kind, pk: client.post(f"/api/review/{kind}/decide/", {"ids": [pk], "status": "approved"}, JSON)  # noqa: E731
    assert decide("tagsuggestion", suggestion.pk).json()["changed"] == [suggestion.pk]
    assert decide("categoryproposal", proposal.pk).status_code == 403
    assert client.post(f"/api/category-proposals/{proposal.pk}/accept/").status_code == 403  # the old endpoint too
    assert client.get("/api/review/categoryproposal/").status_code == 403  # no view permission either
    assert client.get("/api/review/tagsuggestion/").status_code == 200
    assert client.get("/api/review/nosuchkind/").status_code == 404

    categorizer = user("categorizer", "categorization.categorize_tags", "categorization.view_extendedcategory")
    client.force_login(categorizer)  # may categorise by hand, may not decide proposals
    accept = {"action": f"accept:{proposal.tag_id}"}
    assert client.post("/tag_categorize/action", accept).status_code == 403
    assert CategoryProposal.objects.get(pk=proposal.pk).status == "pending"

    client.force_login(user("viewer", "suggestions.view_tagsuggestion"))
    assert client.get("/api/review/tagsuggestion/").status_code == 200
    assert decide("tagsuggestion", suggestion.pk).status_code == 403

    moderators = set(ensure_moderators_group().permissions.values_list("content_type__app_label", "codename"))
    assert {("suggestions", "review_tagsuggestion"), ("categorization", "review_categoryproposal")} <= moderators
    client.force_login(user("mod", moderator=True))
    assert decide("categoryproposal", proposal.pk).json()["changed"] == [proposal.pk]
    assert TagCategory.objects.get(tag=suggestion.tag).category == proposal.category


@pytest.mark.django_db
def test_generic_api_filters_and_keyset_pages(admin_client):
    wd, other = model_version(), model_version("other-model")
    images = [image(n) for n in range(6)]
    suggest(wd, {img: {"smile": 0.9, "hat": 0.3} for img in images})
    suggest(other, {images[0]: {"smile": 0.6}})
    smile = Tag.objects.get(name="smile")

    def ids(**params):
        return [row["id"] for row in admin_client.get("/api/review/tagsuggestion/", params).json()["results"]]

    assert len(ids()) == 13
    assert set(ids(producer=other.producer_id)) == {TagSuggestion.objects.get(model_version=other).pk}
    assert len(ids(tag="smile")) == 7 and ids(tag="smile") == ids(tag=smile.pk) and ids(tag="no_such_tag") == []
    assert len(ids(min_confidence=0.5, max_confidence=0.8)) == 1 and len(ids(image=images[0].pk)) == 3
    assert len(ids(status="pending", created_after="2000-01-01T00:00:00Z")) == 13
    assert ids(created_before="2000-01-01T00:00:00Z") == []
    assert admin_client.get("/api/review/tagsuggestion/", {"min_confidence": "x"}).status_code == 400
    assert admin_client.get("/api/review/tagsuggestion/", {"category": 1}).json()["results"]  # not a subject: ignored

    seen, url = [], "/api/review/tagsuggestion/?page_size=5"
    while url:
        page = admin_client.get(url).json()
        assert "count" not in page  # keyset pages, no count
        seen += [row["id"] for row in page["results"]]
        url = page["next"]
    assert seen == sorted(TagSuggestion.objects.values_list("pk", flat=True))
    first = admin_client.get("/api/review/tagsuggestion/", {"page_size": 1}).json()["results"][0]
    assert first["producer"]["name"] == "wd-test" and first["subject"]["tag"] in {"smile", "hat"}
    assert first["decided_by"] is None
    admin_client.post("/api/review/tagsuggestion/decide/", {"ids": [first["id"]], "status": "rejected"}, JSON)
    decided = admin_client.get("/api/review/tagsuggestion/", {"status": "rejected"}).json()["results"]
    assert [(row["id"], row["decided_by"], row["via"]) for row in decided] == [(first["id"], "admin", "api")]


@pytest.mark.django_db
def test_hub_shows_capped_pending_counts_per_kind_and_producer(admin_client, monkeypatch):
    wd = model_version()
    suggest(wd, {image(n): {"smile": 0.9, "hat": 0.3} for n in range(3)})
    CategoryProposal.objects.create(
        tag=Tag.objects.get(name="smile"), category=ExtendedCategory.objects.first(), confidence=0.9,
        producer=Producer.objects.create(kind=Producer.Kind.CHAT, name="qwen"),
    )  # fmt: skip
    page = admin_client.get("/review/").content.decode()
    assert 'data-kind="tagsuggestion"' in page and 'data-kind="categoryproposal"' in page
    assert "wd-test v1" in page and "qwen" in page and "/suggestions/?model=wd-test" in page
    monkeypatch.setattr(review_service, "COUNT_CAP", 4)
    counts = {c.kind.name: c for c in review_service.pending_counts(review.all_kinds(), cap=4)}
    assert (counts["tagsuggestion"].pending, counts["tagsuggestion"].capped) == (4, True)
    assert (counts["categoryproposal"].pending, counts["categoryproposal"].capped) == (1, False)
    assert [(p.name, n, capped) for p, n, capped in counts["tagsuggestion"].producers] == [("wd-test", 4, True)]


# A throwaway kind: a model and a kind class are all it takes. They are defined inside the fixture and
# taken out of the app registry afterwards, so no other test's flush or migration check ever sees them.


def define_rename_kind() -> tuple[type[Proposal], type[ReviewKind]]:
    class Rename(Proposal):
        """Proposes a display name for a tag."""

        tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="+")
        display_name = models.CharField(max_length=100)

        class Meta:
            app_label = "tagsite"
            db_table = "test_review_rename"

    class Renames(ReviewKind):
        model = Rename
        label = "renames"
        subject_fields = ("tag",)

        def apply(self, proposals, user):
            for proposal in proposals:
                Tag.objects.filter(pk=proposal.tag_id).update(display_name=proposal.display_name)

        def revert(self, proposals, user):
            for proposal in proposals:
                Tag.objects.filter(pk=proposal.tag_id).update(display_name=proposal.tag.name)

        def describe(self, proposal):
            return {"tag": proposal.tag_id, "display_name": proposal.display_name}

    return Rename, Renames


@pytest.fixture
def renames(db):
    global Renames  # the registry imports the kind by dotted path
    Rename, Renames = define_rename_kind()
    with connection.schema_editor() as editor:
        editor.create_model(Rename)
    review.register("rename", f"{__name__}.Renames")
    yield Rename
    review.unregister("rename")
    del apps.all_models["tagsite"]["rename"]
    apps.clear_cache()


def test_a_throwaway_kind_is_decided_through_the_generic_api(renames, admin_client):
    Rename = renames
    tag = get_or_create_tags(["smile"])["smile"]
    producer = Producer.objects.create(kind=Producer.Kind.RULE, name="capitalise")
    proposal = Rename.objects.create(tag=tag, display_name="Smile", confidence=1, producer=producer)
    listed = admin_client.get("/api/review/rename/", {"tag": "smile"}).json()["results"]
    assert listed[0]["subject"] == {"tag": tag.pk, "display_name": "Smile"}
    decided = admin_client.post("/api/review/rename/decide/", {"ids": [proposal.pk], "status": "approved"}, JSON)
    assert decided.json() == {"changed": [proposal.pk], "skipped": [], "missing": [], "refused": {}}
    assert Tag.objects.get(pk=tag.pk).display_name == "Smile"
    admin_client.post("/api/review/rename/decide/", {"ids": [proposal.pk], "status": "pending"}, JSON)  # take it back
    assert Tag.objects.get(pk=tag.pk).display_name == "smile"
    assert list(Decision.objects.filter(kind="rename").values_list("status", flat=True).order_by("pk")) == [
        "approved", "pending",
    ]  # fmt: skip
    assert "Renames" in admin_client.get("/review/").content.decode()


# Concurrency: real threads, each with its own database connection.


def run_threads(count: int, work) -> list:
    barrier, results, errors = threading.Barrier(count), [None] * count, []

    def worker(index: int) -> None:
        try:
            barrier.wait()
            results[index] = work(index)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    return results


@pytest.mark.django_db(transaction=True)
def test_two_threads_deciding_the_same_rows_one_wins_and_the_audit_shows_both(admin_user):
    suggestions = suggest(model_version(), {image(n): {"smile": 0.9, "long_hair": 0.8} for n in range(10)})
    ids = [s.pk for s in suggestions]
    outcomes = run_threads(
        2,
        lambda i: review_service.decide(kind="tagsuggestion", ids=ids, status="approved", user=admin_user, via="api"),
    )
    assert sorted(len(o.changed) for o in outcomes) == [0, 20]
    assert sorted(len(o.skipped) for o in outcomes) == [0, 20]
    audit = Decision.objects.filter(kind="tagsuggestion")
    assert audit.count() == 40 and audit.filter(applied=True).count() == 20
    assert ImageTag.objects.count() == 20
    assert_counts_true()


@pytest.mark.django_db(transaction=True)
def test_eight_threads_approving_overlapping_batches(admin_user):
    create_implication("cat_ears", "animal_ears")
    names = ["1girl", "long_hair", "smile", "cat_ears", "blue_eyes", "hat", "solo", "open_mouth"]
    rng = random.Random(8)
    per_image = {image(n): {name: rng.uniform(0.3, 1) for name in rng.sample(names, 6)} for n in range(40)}
    ids = [s.pk for s in suggest(model_version(), per_image)]
    batches = [rng.sample(ids, 32) for _ in range(8)]  # overlapping, in random order

    outcomes = run_threads(
        8,
        lambda i: review_service.decide(
            kind="tagsuggestion", ids=batches[i], status="approved", user=admin_user, via="api"
        ),
    )
    decided = {pk for batch in batches for pk in batch}
    changed = [pk for outcome in outcomes for pk in outcome.changed]
    assert sorted(changed) == sorted(decided)  # each applied exactly once
    applied = Decision.objects.filter(applied=True).values("object_id").annotate(n=Count("pk"))
    assert {row["n"] for row in applied} == {1} and len(applied) == len(decided)
    approved = TagSuggestion.objects.filter(pk__in=decided)
    assert set(approved.values_list("status", flat=True)) == {"approved"}
    for suggestion in approved:
        assert ImageTag.objects.filter(image_id=suggestion.image_id, tag_id=suggestion.tag_id).exists()
    assert_counts_true()


@pytest.mark.django_db
def test_a_decision_batch_runs_the_same_queries_for_5_and_50_suggestions(admin_user):
    """One bulk write per batch: no query per suggestion (before: 5 per suggestion, 175 for 33)."""
    create_implication("cat_ears", "animal_ears")
    names = ["smile", "cat_ears", "hat", "solo", "blush"]
    ids = [s.pk for s in suggest(model_version(), {image(n): dict.fromkeys(names, 0.9) for n in range(10)})]
    assert len(ids) == 60  # 6 per image: the 5 and animal_ears, which cat_ears implies
    counts = {}
    for size, batch in ((5, ids[:6]), (50, ids[6:])):  # one image's, then nine images'; the same tags
        for status in ("approved", "rejected"):
            with CaptureQueriesContext(connection) as queries:
                review_service.decide(kind="tagsuggestion", ids=batch, status=status, user=admin_user, via="api")
            counts[size, status] = len(queries)
    assert counts[5, "approved"] == counts[50, "approved"] and counts[5, "rejected"] == counts[50, "rejected"]
    assert max(counts.values()) <= 16, counts
    assert_counts_true()


@pytest.mark.django_db
def test_the_review_api_runs_the_same_queries_for_5_and_50_rows(admin_client):
    suggest(model_version(), {image(n): {"smile": 0.9, "hat": 0.3, "solo": 0.5} for n in range(20)})
    counts = []
    for size in (5, 50):
        with CaptureQueriesContext(connection) as queries:
            rows = admin_client.get("/api/review/tagsuggestion/", {"page_size": size}).json()["results"]
        assert len(rows) == size
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


@pytest.mark.django_db
def test_the_review_api_rows_are_what_the_proposal_serializer_writes(admin_client, admin_user):
    """The listing builds its rows without DRF's per-field calls: the same JSON as ProposalSerializer."""
    from tagsite.review.api import ProposalSerializer

    wd, other = model_version(), model_version("other-model")
    images = [image(n) for n in range(3)]
    first, *_ = suggest(wd, {img: {"smile": 0.9, "hat": 0.3} for img in images})
    suggest(other, {images[0]: {"solo": 0.6}})
    review_service.decide(
        kind=review.get_kind("tagsuggestion"), ids=[first.pk], status="approved", user=admin_user, via="api"
    )
    qwen = Producer.objects.create(kind=Producer.Kind.CHAT, name="qwen")
    CategoryProposal.objects.create(tag=first.tag, category=ExtendedCategory.objects.first(), producer=qwen)
    for name in ("tagsuggestion", "categoryproposal"):
        kind = review.get_kind(name)
        listed = admin_client.get(f"/api/review/{name}/").json()["results"]
        objects = kind.queryset().select_related("decided_by").in_bulk([row["id"] for row in listed])
        expected = ProposalSerializer([objects[row["id"]] for row in listed], many=True, context={"kind": kind}).data
        assert listed and listed == [dict(row) for row in expected], name
    assert [row["decided_by"] for row in admin_client.get("/api/review/tagsuggestion/").json()["results"]].count(
        "admin"
    ) == 1


@pytest.mark.django_db
def test_an_auto_approval_must_name_its_rule_of_the_same_kind(admin_user):
    (suggestion,) = suggest(model_version(), {image(1): {"smile": 0.9}})
    tags_rule = AutoApproveRule.objects.create(name="tags", kind="tagsuggestion", min_confidence=0.5)
    categories_rule = AutoApproveRule.objects.create(name="categories", kind="categoryproposal", min_confidence=0.5)
    attempts = [
        {"status": "auto_approved"},  # no rule
        {"status": "auto_approved", "rule": categories_rule},  # another kind's rule
        {"status": "approved", "rule": tags_rule},  # a person's approval names no rule
    ]
    for attempt in attempts:
        with pytest.raises(ValueError):
            review_service.decide(kind="tagsuggestion", ids=[suggestion.pk], via="rule", **attempt)
    assert not Decision.objects.exists() and TagSuggestion.objects.get().status == "pending"
    review_service.decide(kind="tagsuggestion", ids=[suggestion.pk], status="auto_approved", via="rule", rule=tags_rule)
    assert Decision.objects.get().rule == tags_rule


@pytest.mark.django_db
def test_moderators_read_producers_rules_and_the_audit_and_every_declared_permission_exists(client):
    declared = [*moderator_permissions(), *review.permissions()]
    existing = {f"{a}.{c}" for a, c in Permission.objects.values_list("content_type__app_label", "codename")}
    assert [name for name in declared if name not in existing] == []  # no stale name (a model that is gone)
    group = {
        f"{a}.{c}" for a, c in ensure_moderators_group().permissions.values_list("content_type__app_label", "codename")
    }
    assert set(declared) <= group
    assert {"tagsite.view_decision", "tagsite.view_autoapproverule", "tagsite.view_producer"} <= group
    client.force_login(user("mod", moderator=True))
    for model in ("decision", "autoapproverule", "producer"):
        assert client.get(f"/admin/tagsite/{model}/").status_code == 200, model


@pytest.mark.django_db
def test_hub_links_of_one_producer_show_only_its_proposals(admin_client):
    qwen = Producer.objects.create(kind=Producer.Kind.CHAT, name="qwen")
    other = Producer.objects.create(kind=Producer.Kind.CHAT, name="other")
    tags = get_or_create_tags(["smile", "hat"])
    mine = CategoryProposal.objects.create(
        tag=tags["smile"], category=ExtendedCategory.objects.first(), confidence=0.9, producer=qwen
    )
    CategoryProposal.objects.create(tag=tags["hat"], category=ExtendedCategory.objects.first(), producer=other)
    url = review.get_kind("categoryproposal").screen_url(qwen)
    assert url.replace("&", "&amp;") in admin_client.get("/review/").content.decode()
    assert [row["id"] for row in admin_client.get(url).json()["results"]] == [mine.pk]


@pytest.mark.django_db
def test_deciding_on_tag_categorize_needs_only_the_review_permission(client):
    tag = get_or_create_tags(["smile"])["smile"]
    category = ExtendedCategory.objects.first()
    proposal = CategoryProposal.objects.create(
        tag=tag, category=category, confidence=0.9, producer=Producer.objects.create(kind=Producer.Kind.CHAT, name="m")
    )
    client.force_login(user("reviewer", "categorization.review_categoryproposal"))
    response = client.post("/tag_categorize/action", {"action": f"accept:{tag.pk}"})
    assert response.status_code == 302 and CategoryProposal.objects.get(pk=proposal.pk).status == "approved"
    assert TagCategory.objects.get(tag=tag).category == category
    set_by_hand = {"action": f"set:{tag.pk}", f"category_{tag.pk}": ""}
    assert client.post("/tag_categorize/action", set_by_hand).status_code == 403  # categorising by hand is not review
    assert TagCategory.objects.filter(tag=tag).exists()
