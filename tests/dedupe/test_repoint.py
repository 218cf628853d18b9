"""tagsite's tag merge (aliases, approved dedupe merges): image links and other apps' rows move in bulk SQL;
rows that would duplicate the target's are dropped and counted, never silently skipped row by row."""

from importlib import import_module

import pytest
from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext

from categorization.models import CategoryProposal, ExtendedCategory, TagCategory
from tagsite.models import Image, ImageTag, Producer, Tag
from tagsite.services.tags import create_alias, merge_tags
from tests.dedupe.conftest import make_tags

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def categories(db):
    import_module("categorization.migrations.0002_categories").create_categories(apps, None)


def images(count: int) -> list[Image]:
    return Image.objects.bulk_create([Image(path=f"/library/{i}.jpg", sha256=f"{i:064x}") for i in range(count)])


def test_links_move_in_bulk_and_conflicts_are_dropped_and_counted():
    old, target = make_tags("tee_shirt", "t-shirt")
    first, second, third = images(3)
    ImageTag.objects.create(image=first, tag=old, source="manual")
    ImageTag.objects.create(image=second, tag=old, source="manual")
    ImageTag.objects.create(image=second, tag=target, source="implied")  # the given source wins
    ImageTag.objects.create(image=third, tag=target, source="file")
    attire, face = ExtendedCategory.objects.get(code="08_Attire_Acc"), ExtendedCategory.objects.get(code="03_Body_Face")
    TagCategory.objects.create(tag=old, category=attire)  # target has none: the category follows
    producer = Producer.objects.create(kind=Producer.Kind.CHAT, name="m")
    CategoryProposal.objects.create(tag=old, category=attire, producer=producer)  # both pending: old's is dropped
    CategoryProposal.objects.create(tag=target, category=face, producer=producer)
    CategoryProposal.objects.create(tag=old, category=face, producer=producer, status="rejected")  # moves
    with CaptureQueriesContext(connection) as queries:
        dropped = merge_tags(old, target)
    assert dropped == {"categorization.CategoryProposal": 1}
    assert not any("SAVEPOINT" in q["sql"] for q in queries.captured_queries)  # no row-by-row savepoints
    assert not Tag.objects.filter(pk=old.pk).exists()
    links = dict(ImageTag.objects.filter(tag=target).values_list("image_id", "source"))
    assert links == {first.pk: "manual", second.pk: "manual", third.pk: "file"}
    target.refresh_from_db()
    assert target.usage_count == 3
    assert TagCategory.objects.get(tag=target).category == attire
    assert sorted(CategoryProposal.objects.filter(tag=target).values_list("status", flat=True)) == [
        "pending",
        "rejected",
    ]


def test_an_alias_over_an_existing_tag_merges_it():
    old, target = make_tags("kitty", "cat")
    (image,) = images(1)
    ImageTag.objects.create(image=image, tag=old)
    create_alias("kitty", "cat")
    assert list(ImageTag.objects.filter(image=image).values_list("tag__name", flat=True)) == ["cat"]
