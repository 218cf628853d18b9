"""A database migrated before tag categories moved into this app keeps every tag's category."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from categorization.models import TagCategory
from tagsite.models import Tag

BEFORE = [("tagsite", "0004_llm_registry"), ("categorization", "0002_categories")]
# What tagsite/0004 created before the category link moved (`sqlmigrate tagsite 0004` of that version).
OLD_COLUMN = [
    'ALTER TABLE "tagsite_tag" ADD COLUMN "extended_category_id" bigint NULL CONSTRAINT '
    '"tagsite_tag_extended_category_id_1d840365_fk_categoriz" REFERENCES "categorization_extendedcategory"("id") '
    "DEFERRABLE INITIALLY DEFERRED",
    'CREATE INDEX "tagsite_tag_extended_category_id_1d840365" ON "tagsite_tag" ("extended_category_id")',
]


def columns(table: str) -> set[str]:
    with connection.cursor() as cursor:
        return {column.name for column in connection.introspection.get_table_description(cursor, table)}


@pytest.mark.django_db(transaction=True)
def test_old_extended_category_column_moves_into_tag_categories():
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    with connection.cursor() as cursor:
        for statement in OLD_COLUMN:
            cursor.execute(statement)
    categories = dict(old.get_model("categorization", "ExtendedCategory").objects.values_list("code", "pk"))
    OldTag = old.get_model("tagsite", "Tag")
    tags = OldTag.objects.bulk_create(OldTag(name=f"tag_{i}", display_name=f"tag {i}") for i in range(30))
    codes = sorted(categories)
    expected = {tag.name: codes[i % len(codes)] for i, tag in enumerate(tags) if i % 3}  # every third uncategorised
    with connection.cursor() as cursor:
        for tag in tags:
            if tag.name in expected:
                cursor.execute(
                    "UPDATE tagsite_tag SET extended_category_id = %s WHERE id = %s",
                    [categories[expected[tag.name]], tag.pk],
                )

    executor = MigrationExecutor(connection)
    executor.migrate(latest)

    moved = dict(TagCategory.objects.values_list("tag__name", "category__code"))
    assert moved == expected and len(moved) == 20
    assert Tag.objects.filter(category_link__isnull=True).count() == 10
    assert "extended_category_id" not in columns("tagsite_tag")


@pytest.mark.django_db(transaction=True)
def test_a_fresh_database_migrates_without_the_old_column():
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(BEFORE)
    assert "extended_category_id" not in columns("tagsite_tag")
    MigrationExecutor(connection).migrate(latest)
    assert "category_id" in columns("categorization_tagcategory")
