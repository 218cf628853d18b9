"""Headless Chromium on the merge screen: change the representative, drop a member, approve; the alias exists
and the library finds the re-pointed images under the representative. Similar tags beside each suggestion and on
/tag_categorize, and the library's autocomplete saying "did you mean" when no name starts with the text."""

import pytest
from playwright.sync_api import expect

from dedupe.models import MustNotMerge
from suggestions.models import MLModelVersion
from tagsite.models import Image, Tag, TagAlias
from tests.browser import screenshot
from tests.dedupe.conftest import embed_all, make_tags
from tests.dedupe.test_merge import library, proposal_for
from tests.suggestions.test_review_page import pending_images


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_merge_screen_edit_and_approve(staff_page, live_server, space):
    tags = library()
    proposal = proposal_for(space)
    page = staff_page
    page.goto(f"{live_server.url}/dedupe/")
    card = page.locator(f"#merge-{proposal.pk}")
    assert card.locator(".representative").inner_text() == "t_shirt"
    screenshot(page, "dedupe-merges")

    card.locator(f"button[value='representative:{tags['tshirt'].pk}']").click()
    page.wait_for_selector(".message.success")
    assert page.locator(f"#merge-{proposal.pk} .representative").inner_text() == "tshirt"

    page.locator(f"#merge-{proposal.pk} button[value='drop:{tags['t_shirts'].pk}']").click()
    page.wait_for_selector(f"#merge-{proposal.pk} tr.dropped[data-name='t_shirts']")
    assert MustNotMerge.objects.count() == 2

    page.locator(f"#merge-{proposal.pk} button.approve").click()
    page.wait_for_selector("text=1 merge(s) approved.")
    assert set(TagAlias.objects.values_list("antecedent", "tag__name")) == {("t_shirt", "tshirt")}
    assert set(Tag.objects.values_list("name", flat=True)) == {"tshirt", "t_shirts", "sky"}
    screenshot(page, "dedupe-merged")

    page.goto(f"{live_server.url}/?q=t_shirt")  # the alias leads to the representative's images
    found = {
        int(href.rstrip("/").rsplit("/", 1)[-1])
        for href in page.locator("a[href^='/images/']").evaluate_all(
            "(links) => links.map((a) => a.getAttribute('href'))"
        )
    }
    paths = set(Image.objects.filter(pk__in=found).values_list("path", flat=True))
    assert paths == {"/library/0.jpg", "/library/1.jpg", "/library/2.jpg"}
    screenshot(page, "dedupe-library-after-merge")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_similar_tags_beside_suggestions_and_keywords_and_on_categorize_and_did_you_mean_in_autocomplete(
    staff_page, live_server, space
):
    (image,) = pending_images(1)  # a pending `smile` and `hat` suggestion
    make_tags("grin", "cap", "dog", "sky")
    embed_all(space)
    page = staff_page

    page.goto(f"{live_server.url}/suggestions/")
    smile = page.locator("li.suggestion", has_text="smile")
    smile.locator("details.similar summary").click()
    expect(smile.locator(".similar-list")).to_contain_text("grin (")
    screenshot(page, "dedupe-similar-on-suggestions")

    MLModelVersion.objects.update(kind=MLModelVersion.Kind.VLM)  # the same suggestions as a VLM's keyword chips
    page.goto(f"{live_server.url}/suggestions/texts/")
    chip = page.locator("li.chip", has_text="hat")
    chip.locator("details.similar summary").click()
    expect(chip.locator(".similar-list")).to_contain_text("cap (")
    screenshot(page, "dedupe-similar-on-keyword-chips")

    page.goto(f"{live_server.url}/tag_categorize")
    row = page.locator("tr", has=page.locator("details.similar[data-tag]")).filter(has_text="hat").first
    row.locator("details.similar summary").click()
    expect(row.locator(".similar-list")).to_contain_text("cap (")

    page.goto(f"{live_server.url}/")
    page.locator("#q").press_sequentially("puppy")
    guesses = page.locator("#q + .suggestions")
    expect(guesses.locator("li.did-you-mean")).to_have_text("did you mean")
    expect(guesses.locator("li:not(.did-you-mean)").first).to_contain_text("dog")
    screenshot(page, "dedupe-did-you-mean")
    guesses.locator("li", has_text="dog").dispatch_event("mousedown")
    assert page.locator("#q").input_value() == "dog "

    page.goto(f"{live_server.url}/images/{image.pk}/")  # the image page's tag box asks the same
    page.locator("#tag-editor input[name=tag]").press_sequentially("puppy")
    guesses = page.locator("#tag-editor .suggestions")
    expect(guesses.locator("li.did-you-mean")).to_have_text("did you mean")
    expect(guesses.locator("li:not(.did-you-mean)").first).to_contain_text("dog")
