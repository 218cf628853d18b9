"""Headless Chromium on /emotion/: face crops grouped by label, approve, change a label, keys, the CSV download."""

import csv
import io
import re

import pytest
from django.core.management import call_command

from emotion.models import EmotionProposal
from tests.browser import horizontal_overflow, screenshot


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_review_faces_by_label_and_download_the_csv(staff_page, live_server, folder):
    call_command("auto_tag_images", str(folder), stdout=io.StringIO(), verbosity=0)
    page = staff_page
    page.goto(f"{live_server.url}/emotion/")
    groups = page.locator("[data-review-card]")
    assert groups.evaluate_all("els => els.map(el => el.dataset.label)") == ["happy", "neutral"]
    happy = page.locator("[data-label=happy] [data-proposal]")
    assert happy.count() == 3  # the astronaut, Obama, the small face of the composed photo
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.face img')).every(img => img.complete && img.naturalWidth > 0)"
    )
    assert re.search(r"^happy (0\.9\d|1\.00)$", happy.first.locator(".said").inner_text())

    astronaut = EmotionProposal.objects.get(image__path__endswith="astronaut.png")
    page.click(f"[data-id='{astronaut.pk}'] button.approve")
    page.wait_for_selector(f"[data-id='{astronaut.pk}'].approved")

    grace = EmotionProposal.objects.get(image__path__endswith="two_faces.jpg", face__index=0)
    page.select_option(f"[data-id='{grace.pk}'] select.relabel", "sad")
    page.wait_for_selector(f"[data-id='{grace.pk}'].approved")
    assert page.locator(f"[data-id='{grace.pk}'] .label").inner_text() == "sad"
    assert re.fullmatch(r"model: neutral 0\.9\d", page.locator(f"[data-id='{grace.pk}'] .conf").inner_text())

    page.keyboard.press("j")  # the neutral group is done; back to happy with k, then reject its first face by key
    page.keyboard.press("k")
    obama = EmotionProposal.objects.get(image__path__endswith="obama.jpg")
    index = happy.evaluate_all("els => els.map(el => Number(el.dataset.id))").index(obama.pk)
    page.keyboard.press(str(index + 1))  # flips a pending face to approved
    page.wait_for_selector(f"[data-id='{obama.pk}'].approved")
    small = EmotionProposal.objects.get(image__path__endswith="two_faces.jpg", face__index=1)
    page.check("#select-all")  # bulk over both groups: the one face still pending is rejected
    page.click("[data-bulk=rejected]")
    page.wait_for_selector(f"[data-id='{small.pk}'].rejected")
    screenshot(page, "emotion-review")

    page.goto(f"{live_server.url}/emotion/?status=approved")  # as the server shows a changed label
    said = page.locator(f"[data-id='{grace.pk}'] .said").inner_text()
    assert re.fullmatch(r"sad model: neutral 0\.9\d", said), said  # the 0.97 is neutral's, not sad's

    decided = dict(EmotionProposal.objects.values_list("pk", "status"))
    assert decided[astronaut.pk] == decided[grace.pk] == decided[obama.pk] == "approved"
    assert decided[small.pk] == "rejected"
    assert EmotionProposal.objects.get(pk=grace.pk).label.name == "sad"

    with page.expect_download() as download:
        page.click("a.download >> nth=0")
    rows = list(csv.reader(open(download.value.path(), newline="", encoding="utf-8")))
    assert rows[0] == ["filename", "path", "emotion", "confidence"]
    assert sorted((row[0], row[2]) for row in rows[1:]) == [
        ("astronaut.png", "happy"), ("obama.jpg", "happy"), ("two_faces.jpg", "sad"),
    ]  # fmt: skip

    page.set_viewport_size({"width": 390, "height": 800})
    assert horizontal_overflow(page) == []
    screenshot(page, "emotion-review-390")
