"""Second-audit regressions: what staff can read and write, counts that stay true, odd input."""

import os
import shutil

import pytest
from django.contrib.auth.models import Group, User

from suggestions.models import TagMapping
from tagsite.models import Image, Tag
from tagsite.services import tags as tag_service
from tagsite.services.accounts import MODERATORS
from tagsite.services.ingest import import_folder
from tests.factories import write_keywords

pytestmark = pytest.mark.django_db


def test_the_file_view_serves_only_the_imported_file(admin_client, image_folder):
    (image_folder / "evil.jpg").symlink_to("/etc/passwd")
    import_folder(image_folder)
    evil = Image.objects.get(path=str(image_folder / "evil.jpg"))
    assert evil.status == "failed"
    assert admin_client.get(f"/images/{evil.pk}/file").status_code == 404

    photo = Image.objects.get(path=str(image_folder / "photo0.jpg"))
    assert admin_client.get(f"/images/{photo.pk}/file").status_code == 200
    os.remove(photo.path)
    os.symlink("/etc/passwd", photo.path)  # swapped after the import
    assert admin_client.get(f"/images/{photo.pk}/file").status_code == 404


def test_a_junk_keyword_does_not_fail_the_import(image_folder):
    write_keywords(image_folder / "photo0.jpg", subject=["x" * 300, "harbour"])
    assert import_folder(image_folder)["new"] == 3
    assert list(Image.objects.get(path=str(image_folder / "photo0.jpg")).tags.values_list("name", flat=True)) == [
        "harbour"
    ]


def test_too_long_names_are_a_400(admin_client):
    long = "y" * 300
    response = admin_client.post("/api/implications/", {"antecedent": long, "consequent": "b"}, "application/json")
    assert response.status_code == 400
    response = admin_client.post("/api/aliases/", {"antecedent": "a", "target": long}, "application/json")
    assert response.status_code == 400


def test_a_missing_file_that_comes_back_is_restored(image_folder, tmp_path):
    import_folder(image_folder)
    shutil.move(image_folder / "photo1.jpg", tmp_path / "away.jpg")
    assert import_folder(image_folder)["missing"] == 1
    shutil.move(tmp_path / "away.jpg", image_folder / "photo1.jpg")
    assert import_folder(image_folder)["restored"] == 1
    assert Image.objects.get(path=str(image_folder / "photo1.jpg")).status == "ok"


def test_usage_counts_follow_deletes_in_admin(admin_client, image_folder):
    import_folder(image_folder)
    image = Image.objects.first()
    tag_service.add_tags([image], ["lonely"])
    assert Tag.objects.get(name="lonely").usage_count == 1
    response = admin_client.post(f"/admin/tagsite/image/{image.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert Tag.objects.get(name="lonely").usage_count == 0


def test_an_alias_keeps_what_pointed_at_the_merged_tag():
    kitty = tag_service.get_or_create_tags(["kitty"])["kitty"]
    mapping = TagMapping.objects.create(source="danbooru", external_tag="cat_(animal)", tag=kitty)
    tag_service.create_alias("kitty", "cat")
    mapping.refresh_from_db()
    assert mapping.tag.name == "cat"


@pytest.mark.parametrize("url", ["/?q=%00", "/api/images/?q=a%00", "/api/tags/autocomplete/?q=%00", "/jobs/?x=%00"])
def test_nul_bytes_are_a_bad_request(admin_client, url):
    assert admin_client.get(url).status_code == 400


def test_admin_refuses_a_tag_that_differs_only_in_case(admin_client):
    Tag.objects.create(name="cat", display_name="cat")
    response = admin_client.post(
        "/admin/tagsite/tag/add/", {"name": "Cat", "display_name": "Cat", "danbooru_category": 0}
    )
    assert response.status_code == 200 and "already exists" in response.content.decode()


def test_writes_need_model_permissions_reads_need_staff(client, image_folder):
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get("/api/tags/").status_code == 200
    assert client.post("/api/tags/", {"display_name": "x"}, "application/json").status_code == 403
    assert client.post("/api/aliases/", {"antecedent": "a", "target": "b"}, "application/json").status_code == 403
    import_folder(image_folder)
    image = Image.objects.first()
    assert client.post(f"/api/images/{image.pk}/tags/", {"tags": ["x"]}, "application/json").status_code == 403

    staff.groups.add(Group.objects.get(name=MODERATORS))
    staff = User.objects.get(pk=staff.pk)  # fresh permission cache
    client.force_login(staff)
    assert client.post("/api/tags/", {"display_name": "x"}, "application/json").status_code == 201
    assert client.post("/api/aliases/", {"antecedent": "a", "target": "b"}, "application/json").status_code == 201
    assert client.post(f"/api/images/{image.pk}/tags/", {"tags": ["x"]}, "application/json").status_code == 200
