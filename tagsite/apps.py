from django.apps import AppConfig
from django.db.models.signals import post_migrate


class TagsiteConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "tagsite"
    verbose_name = "Library"

    def ready(self):
        from tagsite.services.accounts import ensure_moderators_group

        post_migrate.connect(ensure_moderators_group, dispatch_uid="tagsite.moderators")
