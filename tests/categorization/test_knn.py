"""The kNN first pass: the shipped labelled set imported, its cross-validated accuracy and 90 %-precision strength,
and a run where strong votes become the kNN producer's proposals and only the rest reach the LLM."""

import json

import pytest
from django.core.management import call_command

from categorization import knn
from categorization.models import CategorizerEvaluation, CategoryProposal, TagCategory
from categorization.services import categorize_uncategorized
from tagsite.ai.registry import client_for_role
from tests.categorization.conftest import category_of, make_tags

pytestmark = pytest.mark.django_db


def test_import_categories_loads_the_shipped_labelled_set(capsys):
    call_command("import_categories")
    assert "300 tags categorised" in capsys.readouterr().out
    assert TagCategory.objects.count() == 300 and knn.has_labelled_tags()


def test_evaluate_knn_reports_accuracy_coverage_and_the_threshold(capsys):
    call_command("evaluate_knn", "--folds", "5")
    out = capsys.readouterr().out
    print(out)
    evaluation = CategorizerEvaluation.objects.get()
    assert evaluation.tags == 300 and 0.5 < evaluation.accuracy < 0.8  # MiniLM: about 0.64
    report = evaluation.report
    assert report["precision"] >= 0.9 and 0.2 < report["coverage"] < 0.7
    assert knn.threshold(knn.default_space()) == report["threshold"]
    assert "90 % precision from strength" in out


def test_strong_votes_are_proposed_and_only_the_rest_reach_the_llm(llm):
    call_command("import_categories")
    very_long, hair_ribbon, ufo = make_tags("very_long_blonde_hair", "red_hair_ribbon", "unidentified_flying_object")
    with client_for_role("categorize") as client:
        summary = categorize_uncategorized(client, limit=10, first_pass=True)
    knn_proposals = CategoryProposal.objects.filter(producer__name__startswith="knn ")
    answered = {p.tag.name: (p.category.code, p.confidence) for p in knn_proposals}
    assert summary.first_pass == len(answered) >= 1
    assert answered.get("very_long_blonde_hair", ("02_Body_Hair",))[0] == "02_Body_Hair"
    asked = " ".join(json.dumps(r) for r in llm.chat_requests())
    for name in answered:
        assert name not in asked  # never sent to the LLM
    assert "unidentified_flying_object" in asked
    assert category_of(ufo) is None  # proposals wait for review


def test_without_labelled_tags_the_first_pass_is_off_by_default(llm):
    make_tags("very_long_blonde_hair")
    with client_for_role("categorize") as client:
        summary = categorize_uncategorized(client, limit=10)
    assert summary.first_pass == 0 and summary.processed == 1


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_tag_categorize_shows_similar_tags(staff_page, live_server):
    from dedupe.services import embed_tags, space_for
    from tagsite.ai.local_embeddings import LocalMiniLM
    from tests.browser import screenshot

    cat, _dog, _car = make_tags("cat", "kitten", "car")
    space = space_for(LocalMiniLM())
    embed_tags(LocalMiniLM(), space)
    page = staff_page
    page.goto(f"{live_server.url}/tag_categorize")
    row = page.locator(f"tr[data-tag='{cat.name}']")
    row.locator("details.similar summary").click()
    page.wait_for_selector("tr[data-tag='cat'] .similar-list:has-text('kitten (')")
    assert row.locator(".similar-list").inner_text().startswith("kitten (")
    screenshot(page, "tag_categorize-similar")
