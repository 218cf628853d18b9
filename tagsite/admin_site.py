"""The admin site: Django's, without building the app list on pages that do not show it."""

from functools import partial

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig
from django.utils.functional import SimpleLazyObject


class AdminSite(admin.AdminSite):
    # The sidebar rendered the whole app list again on every admin page (about 40 models: 3.5 ms a page, a sixth of
    # a 50-row list); the index and the breadcrumbs link the same pages.
    enable_nav_sidebar = False

    def get_app_list(self, request, app_label=None):
        """Built when a page reads it: every page's context asks for it (2-3 ms of reverse() and permission
        checks), and only the index and an app's page show it."""
        return SimpleLazyObject(partial(super().get_app_list, request, app_label))


class AdminConfig(DjangoAdminConfig):
    """`django.contrib.admin` with this site as `admin.site`."""

    default_site = "tagsite.admin_site.AdminSite"
