"""Filters resolved to ids before the big query (category code, model name), and hand categorisation that locks
tags in id order and retries its whole transaction on a deadlock (issue 9)."""

from unittest import mock

import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from psycopg.errors import DeadlockDetected

from categorization import services
from categorization.models import CachedAnswer, CategoryProposal, ExtendedCategory, TagCategory
from tagsite.models import Producer, Proposal, Tag
from tests.categorization.conftest import category_of, chat_producer


def proposals_for(count: int) -> list[Tag]:
    tags = Tag.objects.bulk_create([Tag(name=f"tag_{n}", display_name=f"tag {n}") for n in range(count)])
    codes = list(ExtendedCategory.objects.order_by("code")[:2])
    CategoryProposal.objects.bulk_create(
        CategoryProposal(tag=tag, category=codes[n % 2], confidence=0.5, producer=chat_producer(f"m{n % 2}"))
        for n, tag in enumerate(tags)
    )
    return tags


def joined_filters(sql: list[str], table: str) -> list[str]:
    """The queries of `table` that filter by a name or code (through a join) rather than by an id."""
    return [query for query in sql if table in query and ('"code" = ' in query or '"name" = ' in query)]


@pytest.mark.django_db
def test_the_proposal_filters_look_names_up_first(admin_client):
    proposals_for(6)
    first = ExtendedCategory.objects.order_by("code").first()
    for params, expected in (({"category": first.code}, 3), ({"model": "m1"}, 3), ({"category": "nope"}, 0)):
        with CaptureQueriesContext(connection) as captured:
            answer = admin_client.get("/api/category-proposals/", params)
        assert answer.status_code == 200 and len(answer.json()["results"]) == expected
        assert not joined_filters([query["sql"] for query in captured], "categorization_categoryproposal")
    assert {
        row["model"] for row in admin_client.get("/api/category-proposals/", {"model": "m1"}).json()["results"]
    } == {"m1"}


@pytest.mark.django_db
def test_filter_tags_by_category_code_uses_its_id():
    tags = proposals_for(4)
    first = ExtendedCategory.objects.order_by("code").first()
    services.assign_category([tags[0].pk, tags[2].pk], first)
    with CaptureQueriesContext(connection) as captured:
        found = list(services.filter_tags(code=first.code))
    assert [tag["name"] for tag in found] == ["tag_0", "tag_2"]
    assert not joined_filters([query["sql"] for query in captured], "tagsite_tag")
    assert list(services.filter_tags(code="nope")) == []


@pytest.mark.django_db
def test_assign_category_upserts_in_id_order():
    tags = proposals_for(5)
    Tag.objects.filter(pk=tags[0].pk).update(display_name="moved")  # its row now lies last in the table
    upsert = mock.patch.object(TagCategory.objects, "bulk_create", wraps=TagCategory.objects.bulk_create)
    with upsert as bulk_create:
        services.assign_category([tag.pk for tag in reversed(tags)], ExtendedCategory.objects.first())
    assert [row.tag_id for row in bulk_create.call_args.args[0]] == sorted(tag.pk for tag in tags)
    assert TagCategory.objects.count() == 5


@pytest.mark.django_db(transaction=True)
def test_set_category_retries_its_transaction_on_a_deadlock(django_user_model):
    tags = proposals_for(2)
    user = django_user_model.objects.create_user("mod")
    chosen = CategoryProposal.objects.get(tag=tags[0]).category
    deadlock = OperationalError("deadlock detected")
    deadlock.__cause__ = DeadlockDetected("deadlock detected")
    real, calls = services.review.decide, []

    def decide_once_deadlocked(**kwargs):
        calls.append(kwargs["status"])
        if len(calls) == 2:  # the rejection, after the tags and the approval were written: all rolled back
            raise deadlock
        return real(**kwargs)

    with mock.patch.object(services.review, "decide", side_effect=decide_once_deadlocked):
        assert services.set_category([tag.pk for tag in tags], chosen, user) == 2
    assert calls == ["approved", "rejected", "approved", "rejected"]
    assert [category_of(tag) for tag in tags] == [chosen.code, chosen.code]
    statuses = dict(CategoryProposal.objects.values_list("tag_id", "status"))
    assert statuses[tags[0].pk] == Proposal.Status.APPROVED
    assert (statuses[tags[1].pk] == Proposal.Status.APPROVED) == (
        CategoryProposal.objects.get(tag=tags[1]).category == chosen
    )
    assert TagCategory.objects.count() == 2


@pytest.mark.django_db
def test_cached_answers_are_searched_by_name_prefix(admin_client):
    category = ExtendedCategory.objects.first()
    CachedAnswer.objects.bulk_create(
        CachedAnswer(tag_name=name, category=category, model="m", prompt_version="v", confidence=0.5)
        for name in ("long_hair", "short_hair", "long_sleeves", "so_long")
    )
    found = admin_client.get("/admin/categorization/cachedanswer/", {"q": "Long "}).context["cl"]  # not so_long
    assert sorted(answer.tag_name for answer in found.result_list) == ["long_hair", "long_sleeves"]
    assert admin_client.get("/admin/categorization/cachedanswer/", {"q": " "}).context["cl"].result_count == 4


@pytest.mark.django_db
def test_cached_answer_filters_offer_each_chat_models_value_once(admin_client):
    for name, version in (("qwen", "v2"), ("qwen", "v1"), ("gemma", "v1"), ("gemma", "")):
        chat_producer(name, version)
    Producer.objects.create(kind=Producer.Kind.EMBEDDING, name="minilm", prompt_version="v9")  # not a chat model
    category = ExtendedCategory.objects.first()
    CachedAnswer.objects.bulk_create(
        CachedAnswer(tag_name=name, category=category, model=model, prompt_version="v1", confidence=0.5)
        for name, model in (("long_hair", "qwen"), ("short_hair", "gemma"))
    )
    specs = admin_client.get("/admin/categorization/cachedanswer/").context["cl"].filter_specs
    options = {spec.parameter_name: [value for value, _ in spec.lookup_choices] for spec in specs}
    assert options == {"model": ["gemma", "qwen"], "prompt_version": ["v1", "v2"]}
    found = admin_client.get("/admin/categorization/cachedanswer/", {"model": "gemma"}).context["cl"]
    assert [answer.tag_name for answer in found.result_list] == ["short_hair"]
