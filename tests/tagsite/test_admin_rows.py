"""A LargeListAdmin's rows, rendered from a plan made once per page (tagsite/templatetags/large_list.py), are
the HTML Django's `{% result_list %}` gives: every large list, sorted, searched and filtered."""

import re

import pytest
from django.contrib import admin
from django.contrib.admin.templatetags.admin_list import result_list

from categorization.models import CategoryProposal
from tagsite.admin import LargeListAdmin
from tagsite.templatetags.large_list import large_result_list
from tests.tagsite.test_admin_scale import add_rows, large_lists

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="[^"]+"')


def page(client, url: str, template: str | None) -> str:
    """The changelist as rendered with `template` (None: Django's own) for every large list."""
    admins = [model_admin for model_admin in admin.site._registry.values() if isinstance(model_admin, LargeListAdmin)]
    saved = [model_admin.change_list_template for model_admin in admins]
    try:
        for model_admin in admins:
            model_admin.change_list_template = template
        response = client.get(url)
    finally:
        for model_admin, kept in zip(admins, saved, strict=True):
            model_admin.change_list_template = kept
    assert response.status_code == 200, url
    return CSRF.sub("", response.content.decode())


@pytest.mark.django_db
def test_rows_are_djangos_html(admin_client):
    add_rows(0, 3)
    urls = [
        *large_lists(),
        *(f"{url}?o=-2" for url in large_lists()),
        "/admin/tagsite/tag/?q=tag_1&o=1",
        "/admin/suggestions/tagsuggestion/?status__exact=approved&q=tag_0",
        "/admin/categorization/categoryproposal/?status__exact=approved&o=3",
        "/admin/tagsite/image/?q=tag_2",
    ]
    for url in urls:
        assert page(admin_client, url, "admin/large_change_list.html") == page(admin_client, url, None), url


def short_code(proposal):
    return proposal.category.code[:3]


class OddColumns(LargeListAdmin):
    """Columns of every kind Django's result list knows: `__str__`, a related lookup, a model property, boolean
    and date methods, a callable, an empty value of its own, an auto-created primary key, a blank string."""

    list_display = [
        "id", "__str__", "tag__name", "category", "knn_category", "confidence", "status", "via", "created_at",
        "decided_at", "is_high", "proposed_on", "no_value", "blank", short_code,
    ]  # fmt: skip
    list_display_links = ["__str__", "status"]

    @admin.display(boolean=True)
    def is_high(self, proposal):
        return proposal.confidence > 0.5

    def proposed_on(self, proposal):
        return proposal.created_at.date()

    @admin.display(empty_value="(none)")
    def no_value(self, proposal):
        return None

    def blank(self, proposal):
        return "   "


@pytest.mark.django_db
def test_rows_of_odd_columns_are_djangos_html(rf, admin_user):
    """Function to function, without the page: each row's cells as Django's `items_for_result` gives them."""
    add_rows(0, 3)
    CategoryProposal.objects.filter(pk=CategoryProposal.objects.first().pk).update(confidence=0.9, via="")
    model_admin = OddColumns(CategoryProposal, admin.site)
    for query in ("", "?o=2", "?q=tag_1"):
        request = rf.get(f"/admin/categorization/categoryproposal/{query}")
        request.user = admin_user
        changelist = model_admin.get_changelist_instance(request)
        changelist.formset = None  # as changelist_view sets it
        django_rows = ["".join(row) for row in result_list(changelist)["results"]]
        rows = ["".join(row) for row in large_result_list(changelist)["results"]]
        assert rows == django_rows and len(rows) == 3


def test_checkbox_and_thumbnail_are_djangos_html(rf):
    """The row checkbox and the thumbnail, written as f-strings, give what Django's widget and format_html give,
    with a name and a path that need escaping."""
    from django.utils.html import format_html

    from tagsite.admin import TagAdmin, thumbnail_html
    from tagsite.models import Image, Tag

    tag = Tag(pk=7, name="x", display_name='<b>"it\'s" & more</b>')
    model_admin = TagAdmin(Tag, admin.site)
    assert model_admin.action_checkbox(tag) == admin.ModelAdmin.action_checkbox(model_admin, tag)
    image = Image(pk=3, sha256="a&b<c>" + "0" * 58, thumbnail="t.webp")
    for size in (64, 320):
        expected = format_html(
            '<img src="{}" style="max-width:{}px;max-height:{}px" alt="">', image.thumbnail_url, size, size
        )
        assert thumbnail_html(image, size) == expected
    assert thumbnail_html(Image(pk=4)) == "-"
