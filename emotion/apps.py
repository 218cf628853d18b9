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
    # Moderators keep the vocabulary (synonyms, the labels' floors) and see what each run found; the review kind
    # adds review_emotion and view_emotionproposal.
    moderator_permissions = [
        "emotion.view_emotionlabel",
        "emotion.change_emotionlabel",
        "emotion.view_emotionsynonym",
        "emotion.add_emotionsynonym",
        "emotion.change_emotionsynonym",
        "emotion.delete_emotionsynonym",
        "emotion.view_imageemotion",
        "emotion.view_face",
    ]

    def ready(self):
        from tagsite import review

        review.register("emotion", "emotion.review.EmotionLabels")
