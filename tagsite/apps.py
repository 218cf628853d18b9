from django.apps import AppConfig
from django.db.models.signals import post_migrate


class TagsiteConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "tagsite"
    verbose_name = "Library"
    task_routes = {"tagsite.tasks.write_metadata_task": {"queue": "io"}}  # file writes: their own queue

    def ready(self):
        from django.conf import settings
        from PIL import Image

        from tagsite import signals  # noqa: F401 - connects the usage-count receivers
        from tagsite.review.services import decided
        from tagsite.services.accounts import ensure_moderators_group
        from tagsite.services.writeback import write_after_approval

        Image.MAX_IMAGE_PIXELS = settings.MAX_IMAGE_PIXELS  # Pillow's own bomb guard follows the setting
        post_migrate.connect(ensure_moderators_group, dispatch_uid="tagsite.moderators")
        decided.connect(write_after_approval, dispatch_uid="tagsite.metadata_auto_write")
