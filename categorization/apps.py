from django.apps import AppConfig


class CategorizationConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "categorization"
    # What the core learns from this app (tagsite/features.py).
    task_routes = {"categorization.tasks.*": {"queue": "llm"}}
    moderator_permissions = [
        "categorization.view_extendedcategory",
        "categorization.categorize_tags",
        "categorization.view_categoryproposal",
    ]
    llm_roles = {"categorize": "chat"}
    tag_parents = "categorization.hierarchy.category_names"  # files get `Body Hair|long hair`

    def ready(self):
        from tagsite import review

        review.register("categoryproposal", "categorization.review.CategoryProposals")
