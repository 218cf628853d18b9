"""Tagging in admin goes through the tag service: aliases rewrite, implications come along, who added it is kept."""

from unittest import mock

import pytest
from django.contrib.admin import AdminSite

from tagsite.models import ImageTag, Tag
from tagsite.services.ingest import ingest_paths
from tagsite.services.tags import create_alias, create_implication, get_or_create_tags
from tests.factories import make_jpeg


@pytest.fixture
def image(tmp_path):
    (image,) = ingest_paths([str(make_jpeg(tmp_path / "cat.jpg"))])
    return image


def change_form_data(response) -> dict:
    """What the browser would post back: the change form's fields and every inline's management and rows."""
    data = {}
    inlines = response.context["inline_admin_formsets"]
    for form in [response.context["adminform"].form, *(form for inline in inlines for form in inline.formset)]:
        for name, field in form.fields.items():
            if not field.disabled and (value := form[name].value()) is not None:
                data[form.add_prefix(name)] = value
    for inline in inlines:
        management = inline.formset.management_form
        data.update({management.add_prefix(name): management[name].value() for name in management.fields})
    return data


def links(image) -> dict[str, tuple[str, str | None]]:
    rows = ImageTag.objects.filter(image=image).select_related("tag", "added_by")
    return {link.tag.name: (link.source, link.added_by and link.added_by.username) for link in rows}


@pytest.mark.django_db
def test_image_inline_adds_through_aliases_and_implications_and_records_who(admin_client, admin_user, image):
    create_implication("cat_ears", "animal_ears")
    create_alias("nekomimi", "cat_ears")
    nekomimi_tag = Tag.objects.get(name="cat_ears")  # the alias's target, which admin's autocomplete offers
    url = f"/admin/tagsite/image/{image.pk}/change/"
    data = change_form_data(admin_client.get(url))
    data.update(
        {"image_tags-TOTAL_FORMS": "1", "image_tags-0-tag": str(nekomimi_tag.pk), "image_tags-0-image": str(image.pk)}
    )
    response = admin_client.post(url, data)
    assert response.status_code == 302, response.context and response.context["errors"]
    assert links(image) == {"cat_ears": ("manual", "admin"), "animal_ears": ("implied", "admin")}
    assert Tag.objects.get(name="animal_ears").usage_count == 1

    data = change_form_data(admin_client.get(url))  # now with its two rows: delete the first
    first = next(key[: -len("-id")] for key in data if key.startswith("image_tags-") and key.endswith("-id"))
    removed = ImageTag.objects.get(pk=data[f"{first}-id"]).tag.name
    data[f"{first}-DELETE"] = "on"
    assert admin_client.post(url, data).status_code == 302
    assert removed not in links(image) and len(links(image)) == 1
    assert Tag.objects.get(name=removed).usage_count == 0


@pytest.mark.django_db
def test_image_tag_admin_add_and_delete_go_through_the_service(admin_client, image):
    create_implication("tabby_cat", "cat")
    tabby = get_or_create_tags(["Tabby Cat"])["Tabby Cat"]
    response = admin_client.post("/admin/tagsite/imagetag/add/", {"image": image.pk, "tag": tabby.pk})
    assert response.status_code == 302
    assert links(image) == {"tabby_cat": ("manual", "admin"), "cat": ("implied", "admin")}
    link = ImageTag.objects.get(image=image, tag=tabby)
    admin_client.post(f"/admin/tagsite/imagetag/{link.pk}/delete/", {"post": "yes"})
    assert set(links(image)) == {"cat"}
    assert Tag.objects.get(pk=tabby.pk).usage_count == 0


@pytest.mark.django_db
def test_admin_builds_its_app_list_only_on_pages_that_show_it(admin_client):
    build_app_dict = AdminSite._build_app_dict
    with mock.patch.object(AdminSite, "_build_app_dict", autospec=True, side_effect=build_app_dict) as build:
        assert admin_client.get("/admin/tagsite/tag/").status_code == 200
        assert not build.called  # the changelist's context asked for it and never read it
        index = admin_client.get("/admin/")
        assert build.called
    assert b'href="/admin/tagsite/tag/"' in index.content
    assert admin_client.get("/admin/tagsite/").status_code == 200
    assert admin_client.get("/admin/nosuchapp/").status_code == 404
