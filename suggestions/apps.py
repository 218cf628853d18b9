from django.apps import AppConfig


class SuggestionsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "suggestions"

    def ready(self):
        from suggestions.handlers import queue_tagging
        from tagsite.services.ingest import images_ingested

        images_ingested.connect(queue_tagging, dispatch_uid="suggestions.queue_tagging")
