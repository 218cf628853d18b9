"""Approved texts are searchable from the library and the API in full text (the GIN tsvector index)."""

import pytest
from django.db import connection

from tagsite.models import Image
from tagsite.services.tags import search_images, search_text
from tests.suggestions.conftest import add_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def texts(tmp_path):
    harbour = add_image(tmp_path, "a.png", (200, 10, 10))
    forest = add_image(tmp_path, "b.png", (10, 200, 10))
    Image.objects.filter(pk=harbour.pk).update(title="Harbour at dusk", caption="Fishing boats leave the harbour.")
    Image.objects.filter(pk=forest.pk).update(description="A misty forest path in autumn, no boats.")
    return harbour, forest


def test_words_phrases_and_negation(texts):
    harbour, forest = texts
    found = lambda text: set(search_text(search_images(), text).values_list("pk", flat=True))  # noqa: E731
    assert found("boats") == {harbour.pk, forest.pk}
    assert found("boats -harbour") == {forest.pk}
    assert found('"fishing boats"') == {harbour.pk} and found("DUSK") == {harbour.pk}
    assert found("autumn or dusk") == {harbour.pk, forest.pk} and found("desert") == set()


def test_the_library_and_the_api_search_texts(admin_client, texts):
    harbour, forest = texts
    page = admin_client.get("/", {"text": "misty forest"}).content.decode()
    assert f"/images/{forest.pk}/" in page and f"/images/{harbour.pk}/" not in page
    rows = admin_client.get("/api/images/", {"text": "harbour"}).json()["results"]
    assert [(row["id"], row["title"]) for row in rows] == [(harbour.pk, "Harbour at dusk")]


def test_the_search_uses_the_gin_index(texts):
    sql, params = search_text(Image.objects.all(), "boats").query.sql_with_params()
    with connection.cursor() as cursor:
        # a tiny table: take away the scans that need no index for the text (seq, and the primary key's walk in
        # id order, which the planner picks by chance), so the plan shows whether the GIN index can serve it
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "image_text_search" in plan, plan
