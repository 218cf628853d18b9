from django.apps import AppConfig


class EmotionConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "emotion"
    # What the core learns from this app (tagsite/features.py).
    task_routes = {"emotion.tasks.*": {"queue": "llm"}}
    llm_roles = {"emotion": "chat"}
