from django.apps import AppConfig


class EmotionConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "emotion"
