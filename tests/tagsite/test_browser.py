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
    # the thumbnail decodes: the element appears before its picture has loaded, so wait for it (fails if it never does)
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumbnail.element_handle(), timeout=10000)
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


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_tagging_by_hand_on_the_image_page_and_in_bulk_in_the_library(staff_page, live_server, tmp_path):
    from tagsite.models import ImageTag
    from tagsite.services.ingest import ingest_paths
    from tagsite.services.tags import add_tags, create_implication
    from tests.browser import horizontal_overflow

    images = ingest_paths([str(make_jpeg(tmp_path / f"photo {n}.jpg", color=(60 * n, 90, 140))) for n in range(3)])
    create_implication("tabby_cat", "cat")
    add_tags([images[2]], ["Tabby Cat"])  # a name with a space, known to autocomplete
    tagged = lambda image: dict(  # noqa: E731
        ImageTag.objects.filter(image=image).values_list("tag__name", "added_by__username")
    )
    page = staff_page
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(f"{live_server.url}/images/{images[0].pk}/")
    page.fill("#tag-editor input", "Tabby Ca")  # typed with a space, as people write it
    page.locator("#tag-editor .suggestions li", has_text="tabby_cat").click()
    assert page.input_value("#tag-editor input") == "tabby_cat"
    page.click("#tag-editor button[type=submit]")
    page.locator("#image-tags .tag", has_text="Tabby Cat").wait_for()
    page.locator("#image-tags .tag.implied", has_text="cat").wait_for()  # the implication came along
    assert tagged(images[0]) == {"tabby_cat": "moderator", "cat": "moderator"}
    page.fill("#tag-editor input", "Deep Sea")  # a new name: created, like everywhere else
    page.press("#tag-editor input", "Enter")
    page.locator("#image-tags .tag", has_text="Deep Sea").wait_for()
    page.wait_for_timeout(300)  # past the autocomplete's delay: an answer to the last keystroke stays closed
    assert page.locator("#tag-editor .suggestions").is_hidden()
    screenshot(page, "image-tagging-1400")
    page.set_viewport_size({"width": 390, "height": 800})
    assert horizontal_overflow(page) == []
    screenshot(page, "image-tagging-390")
    page.set_viewport_size({"width": 1400, "height": 900})
    page.click("#image-tags button[aria-label='remove Deep Sea']")
    page.locator("#image-tags .tag", has_text="Deep Sea").wait_for(state="detached")
    assert set(tagged(images[0])) == {"tabby_cat", "cat"}

    page.goto(f"{live_server.url}/")
    page.check(f".tile[data-image='{images[0].pk}'] .select")
    page.check(f".tile[data-image='{images[1].pk}'] .select")
    assert page.inner_text("#bulk-tags .selected-count") == "2 selected"
    page.fill("#bulk-tags input[name=tag]", "deep s")
    page.locator("#bulk-tags .suggestions li", has_text="deep_sea").click()
    page.click("#bulk-tags button[value=add]")
    page.locator("#bulk-tags .tag-status", has_text="Added deep_sea to 2 image(s).").wait_for()
    page.locator(f".tile[data-image='{images[1].pk}'] .tag", has_text="Deep Sea").wait_for()  # the grid re-rendered
    assert page.is_checked(f".tile[data-image='{images[1].pk}'] .select")  # and kept the selection
    assert [set(tagged(image)) for image in images] == [
        {"tabby_cat", "cat", "deep_sea"},
        {"deep_sea"},
        {"tabby_cat", "cat"},
    ]
    screenshot(page, "library-bulk-1400")
    page.fill("#bulk-tags input[name=tag]", "Deep Sea")
    page.click("#bulk-tags button[value=remove]")
    page.locator("#bulk-tags .tag-status", has_text="Removed Deep Sea from 2 image(s) (2 tag(s) taken off).").wait_for()
    assert not ImageTag.objects.filter(tag__name="deep_sea").exists()
    page.set_viewport_size({"width": 390, "height": 800})
    assert horizontal_overflow(page) == []
    screenshot(page, "library-bulk-390")
    page.set_viewport_size({"width": 1400, "height": 900})

    page.fill("#q", "tabby c")  # the search box completes the last two words as one name
    page.locator("form.search .suggestions li", has_text="tabby_cat").click()
    assert page.input_value("#q") == "tabby_cat "
    page.fill("#q", '"Tabby Cat" -window')  # or a quoted name
    page.click("button:has-text('Search')")
    page.wait_for_url("**/?q=*")
    assert sorted(page.locator(".tile").evaluate_all("els => els.map((el) => Number(el.dataset.image))")) == sorted(
        [images[0].pk, images[2].pk]
    )
