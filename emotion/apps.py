from django.apps import AppConfig


class EmotionConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "emotion"
    # What the core learns from this app (tagsite/features.py): the local backend is ONNX inference (`gpu`), the
    # others are chat calls (`llm`).
    task_routes = {
        "emotion.tasks.label_images_local": {"queue": "gpu"},  # exact names win over patterns
        "emotion.tasks.*": {"queue": "llm"},
    }
    llm_roles = {"emotion": "chat"}

    def ready(self):
        from tagsite import review

        review.register("emotion", "emotion.review.EmotionLabels")
