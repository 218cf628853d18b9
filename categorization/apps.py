from django.apps import AppConfig


class CategorizationConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "categorization"
