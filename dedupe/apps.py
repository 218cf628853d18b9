from django.apps import AppConfig


class DedupeConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "dedupe"
