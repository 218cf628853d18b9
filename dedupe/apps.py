from django.apps import AppConfig


class DedupeConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "dedupe"
    llm_roles = {"embed": "embed"}  # tag dedupe compares embeddings of tag names (tagsite/features.py)
