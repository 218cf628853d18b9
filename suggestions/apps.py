from django.apps import AppConfig


class SuggestionsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "suggestions"
    # What the core learns from this app (tagsite/features.py).
    task_routes = {"suggestions.tasks.infer_*": {"queue": "gpu"}, "suggestions.tasks.describe_*": {"queue": "llm"}}
    llm_roles = {"title": "chat", "caption": "chat", "keywords": "chat", "description": "chat"}  # the VLM stages
    moderator_permissions = [
        "suggestions.view_tagsuggestion",
        "suggestions.review_tagsuggestion",
        "suggestions.view_mlmodelversion",
        "suggestions.view_tagmapping",
        "suggestions.add_tagmapping",
        "suggestions.change_tagmapping",
        "suggestions.view_unmappedtag",
        "suggestions.view_promptprofile",
    ]

    def ready(self):
        from suggestions.handlers import queue_tagging
        from tagsite import review
        from tagsite.services.ingest import images_ingested

        images_ingested.connect(queue_tagging, dispatch_uid="suggestions.queue_tagging")
        review.register("tagsuggestion", "suggestions.review.TagSuggestions")
        review.register("textproposal", "suggestions.review.TextProposals")
