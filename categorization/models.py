"""The 22 extended categories of seed 000, LLM proposals for them, and the answer cache."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from tagsite.models import Job, Tag


class ExtendedCategory(models.Model):
    class Group(models.TextChoices):
        IDENTITY = "identity", "Identity (permanent)"
        CONTEXT = "context", "Context (situational)"
        TECHNICAL = "technical", "Technical/Meta"

    code = models.CharField(max_length=32, unique=True, help_text="e.g. 03_Body_Face")
    name = models.CharField(max_length=64)
    description = models.CharField(max_length=255)
    group = models.CharField(max_length=16, choices=Group.choices)

    class Meta:
        ordering = ["code"]
        verbose_name_plural = "extended categories"
        permissions = [("categorize_tags", "Can categorise tags and review category proposals")]

    def __str__(self) -> str:
        return self.code


class TagCategory(models.Model):
    """A tag's extended category: one row per categorised tag, kept here so the core `Tag` knows no feature app.

    No row means uncategorised; deleting a category uncategorises its tags.
    """

    tag = models.OneToOneField(Tag, primary_key=True, on_delete=models.CASCADE, related_name="category_link")
    category = models.ForeignKey(ExtendedCategory, on_delete=models.CASCADE, related_name="tag_links")

    class Meta:
        verbose_name = "tag category"
        verbose_name_plural = "tag categories"

    def __str__(self) -> str:
        return f"{self.tag.name} -> {self.category.code}"


class CategoryProposal(models.Model):
    """An LLM's category for a tag. Applied to the tag only when accepted (or by the auto-apply setting)."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        ACCEPTED = "accepted", "accepted"
        REJECTED = "rejected", "rejected"
        AUTO_APPLIED = "auto", "auto-applied"

    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="category_proposals")
    category = models.ForeignKey(ExtendedCategory, on_delete=models.CASCADE, related_name="proposals")
    confidence = models.FloatField()
    model = models.CharField(max_length=255)
    prompt_version = models.CharField(max_length=32)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["tag"], condition=Q(status="pending"), name="one_pending_proposal_per_tag")
        ]

    def __str__(self) -> str:
        return f"{self.tag.name} -> {self.category.code} ({self.status})"


class CachedAnswer(models.Model):
    """What a model said about a tag name under a prompt version, so the same question is never paid twice."""

    tag_name = models.CharField(max_length=255)
    model = models.CharField(max_length=255)
    prompt_version = models.CharField(max_length=32)
    category = models.ForeignKey(ExtendedCategory, on_delete=models.CASCADE)
    confidence = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tag_name", "model", "prompt_version"], name="unique_cached_answer")
        ]

    def __str__(self) -> str:
        return f"{self.tag_name} -> {self.category.code}"
