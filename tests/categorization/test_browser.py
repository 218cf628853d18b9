"""Headless Chromium on /tag_categorize: categorise a tag by hand, bulk-accept proposals, see the chart,
follow a running job."""

import pytest

from categorization.models import CategoryProposal, ExtendedCategory
from tagsite.models import Job, Tag
from tests.browser import screenshot
from tests.categorization.conftest import category_of, chat_producer, make_tags


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_categorise_by_hand_bulk_accept_and_chart(staff_page, live_server):
    hat, eyes, hair = make_tags("hat", "blue_eyes", "long_hair")
    for tag, code in ((eyes, "03_Body_Face"), (hair, "02_Body_Hair")):
        CategoryProposal.objects.create(
            tag=tag, category=ExtendedCategory.objects.get(code=code), confidence=0.9, producer=chat_producer()
        )
    page = staff_page
    page.goto(f"{live_server.url}/tag_categorize")

    page.select_option(f"select[name=category_{hat.pk}]", "08_Attire_Acc")
    page.click(f"button[value='set:{hat.pk}']")
    page.wait_for_selector(".message.success")
    assert category_of(hat) == "08_Attire_Acc"

    page.check(f"input[name=tags][value='{eyes.pk}']")
    page.check(f"input[name=tags][value='{hair.pk}']")
    page.click("button[value=bulk_accept]")
    page.wait_for_selector("text=2 proposal(s) accepted.")
    assert dict(Tag.objects.values_list("name", "category_link__category__code")) == {
        "hat": "08_Attire_Acc", "blue_eyes": "03_Body_Face", "long_hair": "02_Body_Hair"
    }  # fmt: skip

    chart = page.locator("#category-chart")
    assert chart.is_visible()
    face_bar = chart.locator(".chart-row[data-code='03_Body_Face'] .chart-bar span")
    assert face_bar.bounding_box()["width"] > 50  # one of the tallest bars
    assert chart.locator(".chart-row[data-code='03_Body_Face'] .chart-count").inner_text() == "1"
    screenshot(page, "tag_categorize")
    page.set_viewport_size({"width": 390, "height": 800})  # a phone: rows stack (tests/tagsite/test_layout.py checks)
    screenshot(page, "tag_categorize-accepted-390")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_page_follows_a_running_job_with_the_shared_poller(staff_page, live_server):
    job = Job.objects.create(kind="categorize", status=Job.Status.RUNNING, total=5, current=1)
    page = staff_page
    page.goto(f"{live_server.url}/tag_categorize?job={job.pk}")
    assert page.evaluate("typeof watchJob") == "function"  # app.js's, shared with the other job pages
    Job.objects.filter(pk=job.pk).update(current=3)
    page.wait_for_selector("#run-job .numbers:text-is('3/5')")
    Job.objects.filter(pk=job.pk).update(status=Job.Status.SUCCEEDED, current=5, message="processed 5")
    with page.expect_navigation():  # the finished run reloads the page for the new counts
        page.wait_for_selector("#run-job .status.succeeded")
    assert page.locator("#run-job .message").inner_text() == "processed 5"


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_proposals_show_the_knn_vote_or_the_dispute_and_the_page_how_right_the_model_is(staff_page, live_server):
    from categorization.models import CategorizerEvaluation

    code = {c.code: c for c in ExtendedCategory.objects.all()}
    sword, cup, eyes, hat = make_tags("sword", "cup", "aqua_eyes", "straw_hat")
    producer = chat_producer("qwen2.5-coder-1.5b", "136ed008c674")
    for tag, category, knn, second, confidence in (
        (sword, "13_Object", "13_Object", None, 0.93),
        (cup, "13_Object", "13_Object", "05_Attire_Main", 0.2),
        (eyes, "13_Object", "03_Body_Face", None, 0.31),
    ):
        CategoryProposal.objects.create(
            tag=tag,
            category=code[category],
            knn_category=code[knn],
            second_category=code[second] if second else None,
            confidence=confidence,
            producer=producer,
        )
    CategoryProposal.objects.create(
        tag=hat, category=code["08_Attire_Acc"], knn_category=code["08_Attire_Acc"], llm_category=code["13_Object"],
        confidence=0.25, producer=producer,
    )  # fmt: skip
    CategorizerEvaluation.objects.create(
        producer=producer, labelled_file="categories_labelled.csv", folds=5, tags=300, accuracy=0.78,
        macro_recall=0.7, knn_accuracy=0.52, requests=15, seconds=900,
    )  # fmt: skip
    page = staff_page
    page.goto(f"{live_server.url}/tag_categorize")
    row = lambda name: page.locator(f"tr[data-tag='{name}'] .proposal")  # noqa: E731
    assert "kNN agrees" in row("sword").inner_text()
    assert "disputed: 05_Attire_Main" in row("cup").inner_text()
    assert "kNN: 03_Body_Face" in row("aqua_eyes").inner_text()
    assert "kNN over LLM: 13_Object" in row("straw_hat").inner_text()
    assert "qwen2.5-coder-1.5b prompt 136ed008c674: 0.78 accuracy" in page.locator(".evaluation").inner_text()
    screenshot(page, "tag_categorize-evidence")
