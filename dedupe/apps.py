from django.apps import AppConfig


class DedupeConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "dedupe"
    # What the core learns from this app (tagsite/features.py).
    llm_roles = {"embed": "embed"}  # tag dedupe compares embeddings of tag names
    task_routes = {"dedupe.tasks.embed_tags_task": {"queue": "gpu"}}
    moderator_permissions = ["dedupe.view_mergeproposal", "dedupe.view_mustnotmerge"]

    def ready(self):
        from django.db.models.signals import post_save

        from dedupe.services import refresh_embedding
        from tagsite import review
        from tagsite.models import Tag
        from tagsite.review.services import decided

        review.register("mergeproposal", "dedupe.review.MergeProposals")
        decided.connect(remember_rejections, dispatch_uid="dedupe-remember-rejections")
        post_save.connect(refresh_embedding, sender=Tag, dispatch_uid="dedupe-refresh-embedding")


def remember_rejections(sender, kind: str, ids: list[int], status: str, user=None, **kwargs) -> None:
    """A rejected merge's pairs are never proposed again (after the decision commits)."""
    from dedupe.models import MergeProposal
    from dedupe.services import reject_pairs
    from tagsite.models import Proposal

    if kind == "mergeproposal" and status == Proposal.Status.REJECTED:
        reject_pairs(list(MergeProposal.objects.filter(pk__in=ids)), user)
