"""The one review script on two kinds' screens (headless Chromium): keyboard, select-all, bulk and per-item
decisions through /api/review/<kind>/decide/, without a reload; and the hub linking to both."""

import pytest

from categorization.models import CategoryProposal, ExtendedCategory, TagCategory
from suggestions.models import TagSuggestion
from tagsite.models import Decision, ImageTag, Producer
from tests.browser import screenshot
from tests.tagsite.test_review import categories, image, model_version, suggest  # noqa: F401 - fixture


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_shared_review_script_on_suggestions_and_categories(staff_page, live_server):
    images = [image(n) for n in range(3)]
    suggest(model_version(), {img: {"smile": 0.9, "hat": 0.3} for img in images})
    llm = Producer.objects.create(kind=Producer.Kind.CHAT, name="qwen", prompt_version="p1")
    hat = TagSuggestion.objects.filter(tag__name="hat").first().tag
    proposal = CategoryProposal.objects.create(
        tag=hat, category=ExtendedCategory.objects.get(code="08_Attire_Acc"), confidence=0.8, producer=llm
    )
    page = staff_page
    page.goto(f"{live_server.url}/review/")
    page.click("a:has-text('Tag suggestions')")
    page.wait_for_selector(".review-card.current")  # the script is running
    page.evaluate("window.notReloaded = true")

    page.keyboard.press("y")  # the first card: approve every pending suggestion
    first = page.locator(f".review-card[data-image='{images[0].pk}']")
    first.locator(".suggestion.approved").nth(1).wait_for()
    page.check("#select-all")
    page.click("button[data-bulk=rejected]")  # the rest of the page
    page.locator(".review-card.done").nth(2).wait_for()
    assert page.evaluate("window.notReloaded") is True
    screenshot(page, "review-shared-suggestions")
    statuses = dict(TagSuggestion.objects.filter(image=images[0]).values_list("tag__name", "status"))
    assert statuses == {"smile": "approved", "hat": "approved"}
    assert set(TagSuggestion.objects.exclude(image=images[0]).values_list("status", flat=True)) == {"rejected"}
    assert ImageTag.objects.filter(source="model").count() == 2
    assert set(Decision.objects.filter(kind="tagsuggestion").values_list("via", flat=True)) == {"page"}

    page.goto(f"{live_server.url}/tag_categorize?state=proposal")
    page.wait_for_selector("[data-review-card].current")
    page.evaluate("window.notReloaded = true")
    page.keyboard.press("y")  # the current row's proposal
    page.locator(f"[data-proposal][data-id='{proposal.pk}'].approved").wait_for()
    assert page.evaluate("window.notReloaded") is True
    screenshot(page, "review-shared-categories")
    assert TagCategory.objects.get(tag=hat).category.code == "08_Attire_Acc"
    assert Decision.objects.get(kind="categoryproposal", object_id=proposal.pk).via == "page"
