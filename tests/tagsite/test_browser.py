import pytest

from tests.browser import screenshot
from tests.factories import make_jpeg, write_keywords


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_login_upload_see_thumbnail_find_by_tag(staff_page, live_server, tmp_path):
    page = staff_page
    photo = make_jpeg(tmp_path / "harbour at dusk.jpg", size=(640, 480), color=(40, 90, 160))
    write_keywords(photo, subject=["Harbour", "boats"])

    page.click("text=Upload")
    page.set_input_files("#file-input", str(photo))
    result = page.locator("#upload-results li").first
    result.locator("text=added").wait_for()
    thumbnail = result.locator("img")
    thumbnail.wait_for()
    assert page.evaluate("img => img.naturalWidth", thumbnail.element_handle()) > 0
    screenshot(page, "upload")

    page.click("text=Library")
    page.fill("#q", "harb")
    page.locator(".suggestions li", has_text="harbour").click()  # autocomplete
    assert page.input_value("#q").startswith("harbour")
    page.fill("#q", "harbour -cats")
    page.click("button:has-text('Search')")
    tile = page.locator(".tile", has_text="harbour_at_dusk")
    tile.wait_for()
    assert page.locator(".tile").count() == 1
    assert page.evaluate("img => img.naturalWidth", tile.locator("img").element_handle()) > 0
    screenshot(page, "library")

    page.fill("#q", "boats -harbour")
    page.click("button:has-text('Search')")
    page.locator("text=No images match").wait_for()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_jobs_page_shows_live_progress(staff_page, live_server):
    from tagsite.models import Job

    job = Job.objects.create(kind="import_images", status="running", current=1, total=10)
    page = staff_page
    page.click("text=Jobs")
    row = page.locator(f"tr[data-job='{job.pk}']")
    assert row.locator(".numbers").inner_text() == "1/10"
    Job.objects.filter(pk=job.pk).update(current=7, status="succeeded", message="7 new")
    row.locator(".numbers", has_text="7/10").wait_for(timeout=10_000)  # no reload: the page polls the API
    assert row.locator(".status").inner_text() == "succeeded"
    screenshot(page, "jobs")
