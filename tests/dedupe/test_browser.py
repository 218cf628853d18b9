"""Headless Chromium on the merge screen: change the representative, drop a member, approve; the alias exists
and the library finds the re-pointed images under the representative."""

import pytest

from dedupe.models import MustNotMerge
from tagsite.models import Image, Tag, TagAlias
from tests.browser import screenshot
from tests.dedupe.test_merge import library, proposal_for


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
