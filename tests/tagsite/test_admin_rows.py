"""A LargeListAdmin's rows, rendered from a plan made once per page (tagsite/templatetags/large_list.py), are
the HTML Django's `{% result_list %}` gives: every large list, sorted, searched and filtered."""

import re

import pytest
from django.contrib import admin

from tagsite.admin import LargeListAdmin
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
