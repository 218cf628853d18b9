"""Tag embeddings in pgvector, merge proposals of near-duplicate tags, and pairs a human said must never merge."""

from django.conf import settings
from django.db import models
from django.db.models import Q
from pgvector.django import VectorField

from tagsite.models import Producer, Proposal, Tag


class EmbeddingSpace(models.Model):
    """One embedding model with its text recipe (the producer: model, version, recipe), whose vectors are comparable
    with each other only. Several can coexist; one is active (what dedupe and similar-tag lookups read).

    Its HNSW index is a partial expression index per space (`services.ensure_index`), since pgvector indexes a
    column of one fixed dimension and spaces differ (384 for MiniLM, 768 for nomic).
    """

    producer = models.OneToOneField(Producer, on_delete=models.PROTECT, related_name="embedding_space")
    prefix = models.CharField(max_length=64, blank=True, help_text="Put before every text, e.g. 'clustering: '.")
    dimensions = models.PositiveIntegerField()
    endpoint = models.JSONField(default=dict, blank=True, help_text="The endpoint it ran on (never a key).")
    active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-active", "pk"]
        constraints = [models.UniqueConstraint(fields=["active"], condition=Q(active=True), name="one_active_space")]

    def __str__(self) -> str:
        return f"{self.producer}{' (active)' if self.active else ''}"

    @property
    def index_name(self) -> str:
        return f"dedupe_tagembedding_hnsw_{self.pk}"


class TagEmbedding(models.Model):
    """A tag's vector in one space, with the text it was computed from: a renamed tag's text differs (stale)."""

    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="embeddings")
    space = models.ForeignKey(EmbeddingSpace, on_delete=models.CASCADE, related_name="embeddings")
    text = models.CharField(max_length=400)
    embedding = VectorField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["space", "tag"], name="one_embedding_per_tag_and_space")]

    def __str__(self) -> str:
        return f"{self.text} ({self.space_id})"


class MergeProposal(Proposal):
    """A cluster of tags that mean the same: approving makes every included member an alias of the representative.

    `undo` keeps what the merge took away (members' names, categories, images, aliases), so taking the approval
    back restores the tags and their images.
    """

    representative = models.ForeignKey(
        Tag, null=True, on_delete=models.SET_NULL, related_name="merge_proposals", help_text="Tag the others become."
    )
    representative_name = models.CharField(max_length=255)
    excluded = models.JSONField(
        default=list, blank=True, help_text="Similar tags that were not included: [{tag, name, similarity}]."
    )
    undo = models.JSONField(default=dict, blank=True, help_text="Set when approved: what the merge took away.")

    class Meta:
        ordering = ["-confidence", "-id"]
        permissions = [("review_mergeproposal", "Can approve or reject tag merge proposals")]
        indexes = [
            models.Index(fields=["status", "producer"]),
            # The merge screen's keyset pages, most confident first: a page reads its rows from the anchor on.
            models.Index(fields=["status", "-confidence", "-id"], name="merge_review_order"),
        ]

    def __str__(self) -> str:
        return f"merge into {self.representative_name} ({self.status})"


class MergeMember(models.Model):
    """A tag of a cluster (the representative too), as it was when proposed; a dropped member stays listed."""

    proposal = models.ForeignKey(MergeProposal, on_delete=models.CASCADE, related_name="members")
    tag = models.ForeignKey(Tag, null=True, on_delete=models.SET_NULL, related_name="merge_memberships")
    name = models.CharField(max_length=255)
    usage_count = models.PositiveIntegerField(default=0)
    danbooru_category = models.SmallIntegerField(choices=Tag.DanbooruCategory.choices, default=0)
    similarity = models.FloatField(help_text="Cosine similarity to the representative (1 for itself).")
    reason = models.CharField(max_length=16, help_text="lexical, alias or embedding: what joined it.")
    included = models.BooleanField(default=True)

    class Meta:
        ordering = ["-similarity", "name"]
        constraints = [models.UniqueConstraint(fields=["proposal", "name"], name="one_member_per_name")]

    def __str__(self) -> str:
        return self.name


class MustNotMerge(models.Model):
    """Two tags a human kept apart (a dropped member, a rejected merge): never proposed together again.

    Stored with the smaller id first, read in either order: a tag merge re-points either side in bulk."""

    tag_a = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="+")
    tag_b = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "must-not-merge pair"
        constraints = [models.UniqueConstraint(fields=["tag_a", "tag_b"], name="unique_must_not_merge")]

    def __str__(self) -> str:
        return f"{self.tag_a_id} != {self.tag_b_id}"
