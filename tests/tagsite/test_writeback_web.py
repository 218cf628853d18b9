"""Metadata write-back on the web: API, image page, review hub, admin action, and a browser on a real worker."""

import pytest
from django.contrib.auth.models import Group, User

from tagsite import metadata
from tagsite.models import Image, Job
from tagsite.services.ingest import import_folder
from tagsite.services.tags import add_tags
from tagsite.services.writeback import WriteOptions, write_images
from tests.browser import screenshot
from tests.conftest import wait_for
from tests.factories import make_jpeg, write_keywords


def staff(name: str, moderator: bool) -> User:
    user = User.objects.create_user(name, password="pw", is_staff=True)
    if moderator:
        user.groups.add(Group.objects.get(name="moderators"))
    return user


@pytest.fixture
def photo(image_folder, settings, tmp_path):
    settings.METADATA_DIR = tmp_path / "metadata"
    write_keywords(image_folder / "photo0.jpg", subject=["Harbour"], iptc=["Harbour"])
    import_folder(image_folder)
    image = Image.objects.get(path=str(image_folder / "photo0.jpg"))
    add_tags([image], ["boats"])
    return image


@pytest.mark.django_db
def test_the_api_compares_the_file_with_tagsite_and_queues_a_write_for_moderators(client, photo):
    client.force_login(staff("reader", moderator=False))
    answer = client.get(f"/api/images/{photo.pk}/metadata/").json()
    fields = {row["field"]: row for row in answer["fields"]}
    assert fields["XMP-dc:Subject"] == {"field": "XMP-dc:Subject", "file": ["Harbour"], "tagsite": ["boats", "Harbour"],
                                        "changes": True}  # fmt: skip
    assert answer["would"] == "write" and answer["dirty"] and not answer["sidecar"]
    assert client.get(f"/api/images/{photo.pk}/metadata/?mode=sideways").status_code == 400
    refused = client.post("/api/metadata/write/", {"ids": [photo.pk]}, content_type="application/json")
    assert refused.status_code == 403  # staff, but not a moderator: no write permission

    client.force_login(staff("mod", moderator=True))
    bad = client.post("/api/metadata/write/", {"ids": [photo.pk], "mode": "merge"}, content_type="application/json")
    assert bad.status_code == 400 and "mode" in bad.json()
    empty = client.post("/api/metadata/write/", {}, content_type="application/json")
    assert empty.status_code == 400 and empty.json()["detail"].startswith("name images to write")
    queued = client.post("/api/metadata/write/", {"ids": [photo.pk], "mode": "append"}, content_type="application/json")
    job = Job.objects.get(pk=queued.json()["job"])
    assert queued.status_code == 202 and queued.json()["url"] == f"/jobs/{job.pk}/"
    assert job.params == {
        "selection": {"ids": [photo.pk], "query": "", "folder": "", "all_dirty": False},
        "options": {
            "mode": "append", "sidecar_only": False, "overwrite": False, "backup": False, "dry_run": False,
            "remove": [],
        },
    }  # fmt: skip

    write_images([photo.pk], WriteOptions(mode="append"))
    photo.refresh_from_db()
    after = client.get(f"/api/images/{photo.pk}/metadata/").json()
    assert after["would"] == "nothing (the file already matches)" and not after["dirty"]


@pytest.mark.django_db
def test_image_page_review_hub_and_admin_offer_the_write_to_moderators_only(client, photo):
    client.force_login(staff("reader", moderator=False))
    page = client.get(f"/images/{photo.pk}/").content.decode()
    assert 'id="metadata-diff"' in page and "Write to file" not in page
    assert "Write approved now" not in client.get("/review/").content.decode()
    assert client.post("/metadata/write/", {"ids": [photo.pk]}).status_code == 403

    client.force_login(staff("mod", moderator=True))
    assert "Write to file" in client.get(f"/images/{photo.pk}/").content.decode()
    assert "Write approved now" in client.get("/review/").content.decode()
    response = client.post("/metadata/write/", {"all_dirty": "1"})
    job = Job.objects.get(kind="write_metadata")
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert job.params["selection"]["all_dirty"] is True


@pytest.mark.django_db
def test_the_admin_action_queues_one_write_job(admin_client, photo):
    response = admin_client.post(
        "/admin/tagsite/image/", {"action": "write_metadata", "_selected_action": [photo.pk]}, follow=True
    )
    job = Job.objects.get(kind="write_metadata")
    assert job.params["selection"]["ids"] == [photo.pk]
    assert f'Write job <a href="/jobs/{job.pk}/">#{job.pk}</a> queued.' in response.content.decode()
    form = admin_client.get(f"/admin/tagsite/image/{photo.pk}/change/").content.decode()
    assert 'name="metadata_fingerprint"' not in form and "Metadata written at" in form  # shown, not editable


@pytest.mark.browser
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_diff_on_the_image_page_then_write_a_library_selection_and_watch_its_job(
    celery_worker, staff_page, live_server, tmp_path
):
    folder = tmp_path / "shots"
    folder.mkdir()
    for index in range(3):
        make_jpeg(folder / f"shot{index}.jpg", size=(320, 240), color=(40 * index, 90, 160))
    write_keywords(folder / "shot0.jpg", subject=["Harbour"])
    import_folder(folder)
    images = list(Image.objects.order_by("path"))
    for image in images:
        add_tags([image], ["dusk"])
    page = staff_page

    page.goto(f"{live_server.url}/images/{images[0].pk}/")
    diff = page.locator("#metadata-diff")
    assert "Harbour" in diff.locator("tr.changes", has_text="XMP-dc:Subject").inner_text()
    assert "dusk, Harbour" in diff.locator("tr.changes", has_text="XMP-dc:Subject").inner_text()
    screenshot(page, "image-metadata-diff")
    page.click("#write-to-file button")
    page.wait_for_url(f"{live_server.url}/jobs/*/")
    page.locator(".status.badge.succeeded").wait_for(timeout=30_000)
    assert metadata.read_fields([images[0].path])[images[0].path][metadata.SUBJECT] == ["dusk", "Harbour"]

    page.goto(f"{live_server.url}/")
    for image in images[1:]:
        page.check(f".tile[data-image='{image.pk}'] .select")
    page.click("#bulk-tags button[value=write]")
    page.wait_for_url(f"{live_server.url}/jobs/*/")
    page.locator(".status.badge.succeeded").wait_for(timeout=30_000)
    page.locator("#job-audit a", has_text="summary.md").wait_for()
    screenshot(page, "metadata-write-job")
    job = wait_for(lambda: Job.objects.filter(kind="write_metadata", status="succeeded").order_by("-pk").first())
    assert sorted(job.params["selection"]["ids"]) == [image.pk for image in images[1:]] and job.counts == {"written": 2}
    page.goto(f"{live_server.url}/images/{images[0].pk}/")
    assert page.locator("#metadata-would").inner_text() == "nothing (the file already matches)"
