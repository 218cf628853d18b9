"""The 22 extended categories of seed 000, LLM proposals for them, and the answer cache."""

from django.db import models
from django.db.models import Q

from tagsite.models import Producer, Proposal, Tag


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


class CategoryProposal(Proposal):
    """An LLM's category for a tag. Applied to the tag only when approved (by a moderator or a rule)."""

    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="category_proposals")
    category = models.ForeignKey(ExtendedCategory, on_delete=models.CASCADE, related_name="proposals")
    knn_category = models.ForeignKey(
        ExtendedCategory,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The labelled neighbours' vote beside the LLM's answer (agreement raises the confidence).",
    )
    second_category = models.ForeignKey(
        ExtendedCategory,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Asked twice: the second answer. Different from the category: disputed, for review.",
    )
    llm_category = models.ForeignKey(
        ExtendedCategory,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The LLM's answer, when a strong kNN vote overrode it (the category is then the vote's).",
    )
    previous_category = models.ForeignKey(
        ExtendedCategory,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The tag's category when this was approved (empty: none); taking the approval back restores it.",
    )

    class Meta:
        ordering = ["-id"]
        permissions = [("review_categoryproposal", "Can approve or reject category proposals")]
        constraints = [
            models.UniqueConstraint(fields=["tag"], condition=Q(status="pending"), name="one_pending_proposal_per_tag")
        ]
        indexes = [models.Index(fields=["status", "producer"])]

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


class CategorizerEvaluation(models.Model):
    """How right a producer (model + prompt version) is on a labelled file, cross-validated by
    `evaluate_categorizer`: what a user reads before trusting the model they configured."""

    producer = models.ForeignKey(Producer, on_delete=models.CASCADE, related_name="categorizer_evaluations")
    labelled_file = models.CharField(max_length=255)
    folds = models.PositiveSmallIntegerField()
    tags = models.PositiveIntegerField(help_text="Labelled tags asked about (a stratified subset, or all).")
    accuracy = models.FloatField()
    macro_recall = models.FloatField()
    knn_accuracy = models.FloatField(help_text="The labelled neighbours' vote alone.")
    requests = models.PositiveIntegerField()
    seconds = models.FloatField()
    report = models.JSONField(default=dict, help_text="Options, worst categories' confusion, confidence cuts.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.producer}: {self.accuracy:.1%} on {self.tags} tags"
