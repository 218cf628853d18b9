"""Taking decisions back restores exactly what was there: implied tags approved on their own, a tag's previous
category, and a move back to pending that would break a kind's rule is refused with its reason (never a 500)."""

import itertools

import pytest

from categorization.models import CategoryProposal, ExtendedCategory, TagCategory
from tagsite.models import Decision, ImageTag, Producer
from tagsite.review import services as review_service
from tagsite.services.tags import add_tags, create_implication
from tests.tagsite.test_review import (  # noqa: F401 - `categories` is an autouse fixture
    JSON,
    assert_counts_true,
    categories,
    image,
    model_version,
    snapshot,
    suggest,
    user,
)

APPROVALS = {"cat first": [["cat_ears"], ["animal_ears"]], "animal first": [["animal_ears"], ["cat_ears"]]}
APPROVALS["together"] = [["cat_ears", "animal_ears"]]
REJECTIONS = {"cat first": [["cat_ears"], ["animal_ears"]], "animal first": [["animal_ears"], ["cat_ears"]]}
REJECTIONS["together"] = [["cat_ears", "animal_ears"]]


def decide(by_tag: dict, names: list[str], status: str, admin_user) -> None:
    ids = [by_tag[name].pk for name in names]
    review_service.decide(kind="tagsuggestion", ids=ids, status=status, user=admin_user, via="api")


@pytest.mark.django_db
@pytest.mark.parametrize(("approval", "rejection"), list(itertools.product(APPROVALS, REJECTIONS)))
def test_an_implied_tag_approved_on_its_own_goes_when_both_are_taken_back(admin_user, approval, rejection):
    create_implication("cat_ears", "animal_ears")
    img = image(1)
    add_tags([img], ["smile"])
    before = snapshot(img)
    by_tag = {s.tag.name: s for s in suggest(model_version(), {img: {"cat_ears": 0.9}})}
    assert set(by_tag) == {"cat_ears", "animal_ears"}  # the implied tag is a suggestion of its own

    for names in APPROVALS[approval]:
        decide(by_tag, names, "approved", admin_user)
    assert {("cat_ears", "model"), ("animal_ears", "model")} <= snapshot(img)  # both approved: both given
    assert_counts_true()

    first, *rest = REJECTIONS[rejection]
    decide(by_tag, first, "rejected", admin_user)
    if first == ["cat_ears"]:
        assert snapshot(img) == before | {("animal_ears", "model")}  # still approved on its own
    elif first == ["animal_ears"]:
        assert snapshot(img) == before | {("cat_ears", "model"), ("animal_ears", "implied")}  # cat_ears keeps it
    for names in rest:
        decide(by_tag, names, "rejected", admin_user)
    assert snapshot(img) == before
    assert_counts_true()


@pytest.mark.django_db
def test_an_approved_tag_a_kept_tag_implies_stays_implied_when_taken_back(admin_user):
    create_implication("kemonomimi", "animal_ears")
    img = image(1)
    (suggestion,) = suggest(model_version(), {img: {"animal_ears": 0.8}})
    add_tags([img], ["kemonomimi"])  # by hand, after the suggestion: animal_ears comes implied
    before = snapshot(img)
    decide({"animal_ears": suggestion}, ["animal_ears"], "approved", admin_user)
    assert ("animal_ears", "model") in snapshot(img)
    decide({"animal_ears": suggestion}, ["animal_ears"], "pending", admin_user)
    assert snapshot(img) == before
    assert_counts_true()


@pytest.mark.django_db
def test_a_revert_removes_an_approved_tag_left_implied_by_older_approvals(admin_user):
    """Rows from before approvals upgraded implied tags: the approved tag is still `implied`; a revert recomputes."""
    create_implication("cat_ears", "animal_ears")
    img = image(1)
    by_tag = {s.tag.name: s for s in suggest(model_version(), {img: {"cat_ears": 0.9}})}
    decide(by_tag, ["cat_ears", "animal_ears"], "approved", admin_user)
    ImageTag.objects.filter(image=img, tag__name="animal_ears").update(source="implied")  # as the old code left it
    decide(by_tag, ["cat_ears", "animal_ears"], "rejected", admin_user)
    assert snapshot(img) == set()
    assert_counts_true()


def category(code_index: int) -> ExtendedCategory:
    return ExtendedCategory.objects.order_by("code")[code_index]


def propose(tag, target: ExtendedCategory, status: str = "pending") -> CategoryProposal:
    producer = Producer.objects.get_or_create(kind=Producer.Kind.CHAT, name="m")[0]
    return CategoryProposal.objects.create(tag=tag, category=target, confidence=0.9, producer=producer, status=status)


def category_code(tag) -> str | None:
    return TagCategory.objects.filter(tag=tag).values_list("category__code", flat=True).first()


@pytest.mark.django_db
@pytest.mark.parametrize("taken_back_to", ["rejected", "pending"])
def test_taking_a_category_approval_back_restores_the_previous_category(admin_user, taken_back_to):
    a, b, c = category(1), category(2), category(3)
    tags = {tag.name: tag for tag in add_tags([image(1)], ["in_a", "uncategorised", "moved_on"])}
    in_a, uncategorised, moved_on = tags["in_a"], tags["uncategorised"], tags["moved_on"]
    TagCategory.objects.create(tag=in_a, category=a)
    TagCategory.objects.create(tag=moved_on, category=a)
    proposals = [propose(in_a, b), propose(uncategorised, b), propose(moved_on, b)]
    ids = [p.pk for p in proposals]
    review_service.decide(kind="categoryproposal", ids=ids, status="approved", user=admin_user, via="api")
    assert [category_code(tag) for tag in (in_a, uncategorised, moved_on)] == [b.code] * 3
    TagCategory.objects.filter(tag=moved_on).update(category=c)  # a person moved it on since
    review_service.decide(kind="categoryproposal", ids=ids, status=taken_back_to, user=admin_user, via="api")
    assert [category_code(tag) for tag in (in_a, uncategorised, moved_on)] == [a.code, None, c.code]


@pytest.mark.django_db
def test_back_to_pending_beside_another_pending_proposal_is_refused_with_the_reason(client):
    (tag,) = add_tags([image(1)], ["smile"])
    a, b = category(1), category(2)
    approved = propose(tag, a)
    client.force_login(user("mod", moderator=True))
    url = "/api/review/categoryproposal/decide/"
    decide = lambda ids, status: client.post(url, {"ids": ids, "status": status}, JSON)  # noqa: E731
    assert decide([approved.pk], "approved").json()["changed"] == [approved.pk]
    newer = propose(tag, b)  # the categoriser asked again: a new pending proposal for the same tag

    response = decide([approved.pk], "pending")
    assert response.status_code == 200
    assert response.json()["changed"] == [] and set(response.json()["refused"]) == {str(approved.pk)}
    assert f"#{newer.pk}" in response.json()["refused"][str(approved.pk)]
    approved.refresh_from_db()
    assert approved.status == "approved" and category_code(tag) == a.code  # nothing moved
    assert Decision.objects.filter(object_id=approved.pk).latest("pk").applied is False

    # two approved proposals of one tag taken back in one batch: the first goes back, the second waits
    assert decide([newer.pk], "approved").json()["changed"] == [newer.pk]
    both = decide([approved.pk, newer.pk], "pending").json()
    assert both["changed"] == [approved.pk] and set(both["refused"]) == {str(newer.pk)}
    assert CategoryProposal.objects.filter(tag=tag, status="pending").count() == 1
