"""Headless Chromium on the VLM texts' review screen: edit a caption and accept it, accept and reject keyword chips,
apply metadata (the write job it queues runs here and the file carries the edited text)."""

import json
import subprocess

import pytest
from PIL import Image as PILImage

from suggestions.models import TagSuggestion, TextProposal
from suggestions.services.describe import DescribeOptions, describe_images
from tagsite.models import Image, Job
from tagsite.services.ingest import ingest_paths
from tagsite.services.jobs import run_job
from tagsite.services.writeback import run_write_job
from tests.browser import horizontal_overflow, screenshot
from tests.factories import make_jpeg
from tests.llm_server import OpenAITestServer, colour_rule


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_edit_a_caption_accept_keywords_and_apply_metadata(staff_page, live_server, tmp_path, monkeypatch):
    (image,) = ingest_paths([str(make_jpeg(tmp_path / "red.jpg", size=(320, 240), color=(220, 30, 30)))])
    with OpenAITestServer(models=["vlm"]) as server:
        server.chat_rule = colour_rule
        for role in ("title", "caption", "keywords"):
            monkeypatch.setenv(f"TAGSITE_LLM_{role.upper()}_URL", server.url)
            monkeypatch.setenv(f"TAGSITE_LLM_{role.upper()}_MODEL", "vlm")
        describe_images([image], DescribeOptions(stages=("title", "caption", "keywords")))
    page = staff_page
    page.goto(f"{live_server.url}/suggestions/texts/")
    caption = TextProposal.objects.get(field="caption")
    box = page.locator(f"[data-text][data-id='{caption.pk}'] textarea")
    assert box.input_value().startswith("A red picture")
    box.fill("A red square on a white wall, edited by hand")
    page.click(f"[data-text][data-id='{caption.pk}'] button[data-decision=approved]")
    page.wait_for_selector(f"[data-text][data-id='{caption.pk}'].approved")
    red, picture = TagSuggestion.objects.order_by("-confidence")
    page.keyboard.press("1")  # flips the first chip: accepted
    page.wait_for_selector(f"[data-keyword][data-id='{red.pk}'].approved")
    page.click(f"[data-keyword][data-id='{picture.pk}'] button[data-decision=rejected]")
    page.wait_for_selector(f"[data-keyword][data-id='{picture.pk}'].rejected")
    screenshot(page, "suggestions-texts")
    page.click("[data-card-action=apply]")
    page.wait_for_selector("#review-status:has-text('metadata write queued')")
    assert not horizontal_overflow(page)

    image.refresh_from_db()
    caption.refresh_from_db()
    assert image.caption == "A red square on a white wall, edited by hand" == caption.text
    assert caption.model_text.startswith("A red picture") and caption.decided_by.username == "moderator"
    assert list(image.tags.values_list("name", flat=True)) == ["red"]
    assert TextProposal.objects.get(field="title").status == "pending"  # only what was decided
    job = Job.objects.get(kind="write_metadata")
    assert job.params["selection"]["ids"] == [image.pk]
    with run_job(job) as progress:
        run_write_job(job, progress)
    found = subprocess.run(
        ["exiftool", "-j", "-XMP-dc:Description", "-XMP-dc:Subject", image.path], capture_output=True, text=True
    )
    fields = json.loads(found.stdout)[0]
    assert fields["Description"] == "A red square on a white wall, edited by hand" and fields["Subject"] == "red"

    page.goto(f"{live_server.url}/images/{image.pk}/")
    assert page.locator("#image-caption").inner_text() == image.caption
    assert "titles, captions and descriptions" in page.locator("#image-proposals").inner_text()
    tiff = tmp_path / "scan.tif"
    PILImage.new("RGB", (200, 100), (30, 30, 220)).save(tiff)
    (scan,) = ingest_paths([str(tiff)])
    TextProposal.objects.create(
        image=scan, field="title", text="A scan", model_text="A scan", producer=caption.producer
    )
    page.goto(f"{live_server.url}/suggestions/texts/")
    shown = page.locator(f"[data-card][data-image='{scan.pk}'] img")
    shown.scroll_into_view_if_needed()
    page.wait_for_function("img => img.naturalWidth > 0", arg=shown.element_handle())  # Chromium shows no TIFF
    assert shown.get_attribute("src").startswith(f"/images/{scan.pk}/thumbnail.jpg")
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(f"{live_server.url}/suggestions/texts/")
    assert not horizontal_overflow(page)
    screenshot(page, "suggestions-texts-390")
    assert Image.objects.get(pk=image.pk).title == ""
    scan_title = TextProposal.objects.get(image=scan)
    page.keyboard.press("j")  # keys: the next card (the scan), edit its title, leave the box, accept all as edited
    page.keyboard.press("e")
    page.keyboard.press("End")
    page.keyboard.type(", edited")
    page.keyboard.press("Escape")
    page.keyboard.press("y")
    page.wait_for_selector(f"[data-text][data-id='{scan_title.pk}'].approved")
    scan_title.refresh_from_db()
    assert (scan_title.text, scan_title.status) == ("A scan, edited", "approved")
    page.check("#select-all")  # bulk over the page: what is left pending is the red image's title
    page.click("[data-bulk=rejected]")
    page.wait_for_selector("#review-status:has-text('1 rejected')")
    assert TextProposal.objects.get(image=image, field="title").status == "rejected"
    assert not TextProposal.objects.filter(status="pending").exists() and page.locator("[data-card].done").count() == 2
