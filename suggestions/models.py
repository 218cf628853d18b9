"""Tagger model versions, mappings of their labels to internal tags, suggestions and their review; the VLM
stages' prompt profiles and text proposals."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from tagsite.models import Image, Producer, Proposal, Tag


def validate_thresholds(value) -> None:
    """Names to numbers in [0, 1]: anything else (a list, "0.4", NaN) would only fail later, at inference."""
    if not isinstance(value, dict):
        raise ValidationError('Thresholds are a JSON object of names to numbers, e.g. {"general": 0.35}.')
    bad = [
        name
        for name, limit in value.items()
        if isinstance(limit, bool) or not isinstance(limit, int | float) or not 0 <= limit <= 1
    ]
    if bad:
        raise ValidationError(f"Thresholds are numbers from 0 to 1, not those of {', '.join(map(repr, bad))}.")


def validate_label_list(value) -> None:
    """A list of label names: a string here would turn off each of its letters."""
    if not isinstance(value, list) or not all(isinstance(label, str) for label in value):
        raise ValidationError('Turned-off labels are a JSON list of label names, e.g. ["watermark"].')


def validate_category_thresholds(value) -> None:
    """Per Danbooru category: a misspelt category would be silently ignored."""
    validate_thresholds(value)
    unknown = sorted(set(value) - set(Tag.DanbooruCategory.labels))
    if unknown:
        raise ValidationError(
            f"Unknown categories {', '.join(map(repr, unknown))}: use {', '.join(Tag.DanbooruCategory.labels)}."
        )


class MLModelVersion(models.Model):
    """An installed ONNX tagger: a WD14-format model, or a custom theme model with its own labels."""

    class Kind(models.TextChoices):
        WD14 = "wd14", "WD14 (Danbooru labels)"
        CUSTOM = "custom", "custom theme model"
        VLM = "vlm", "VLM keywords (a chat model under a prompt profile; never runs as a tagger)"

    name = models.CharField(max_length=100)
    version = models.CharField(max_length=100)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.WD14)
    label_source = models.CharField(
        max_length=64, default="danbooru", help_text="The TagMapping source its labels are looked up in."
    )
    model_file = models.TextField(help_text="Absolute path of model.onnx.")
    labels_file = models.TextField(help_text="Absolute path of the label CSV (selected_tags.csv).")
    sha256 = models.CharField(max_length=64)
    input_size = models.PositiveIntegerField(help_text="H = W of the NHWC input, read from the graph.")
    fixed_batch = models.PositiveIntegerField(null=True, blank=True, help_text="Empty when the batch axis is dynamic.")
    label_count = models.PositiveIntegerField()
    thresholds = models.JSONField(
        default=dict,
        blank=True,
        validators=[validate_category_thresholds],
        help_text='Per category: {"general": 0.35, ...}.',
    )
    tag_thresholds = models.JSONField(
        default=dict, blank=True, validators=[validate_thresholds], help_text="Per label, overriding its category."
    )
    disabled_labels = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_label_list],
        help_text="Labels turned off (almost always rejected in review): never suggested.",
    )
    use_mcut = models.BooleanField(default=False, help_text="Maximum cut thresholding instead of fixed ones.")
    active = models.BooleanField(default=True, db_index=True)
    source = models.CharField(max_length=255, blank=True, help_text="Where it was installed from.")
    producer = models.OneToOneField(Producer, on_delete=models.PROTECT, related_name="model_version")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "model version"
        ordering = ["name", "-created_at"]
        constraints = [models.UniqueConstraint(fields=["name", "version"], name="unique_model_version")]

    def __str__(self) -> str:
        return f"{self.name} {self.version}"

    def save(self, *args, **kwargs):
        """Every installed version is a producer: what its suggestions name as their source."""
        if self.producer_id is None and self.kind == self.Kind.VLM:  # version is the profile's `name-vN`
            self.producer, _ = Producer.objects.get_or_create(
                kind=Producer.Kind.CHAT, name=self.name, version="", prompt_version=self.version
            )
        elif self.producer_id is None:
            self.producer, _ = Producer.objects.get_or_create(
                kind=Producer.Kind.ONNX_TAGGER, name=self.name, version=self.version, prompt_version=""
            )
        if self.producer.model_file != self.model_file:
            Producer.objects.filter(pk=self.producer_id).update(model_file=self.model_file)
        super().save(*args, **kwargs)


# A model version's per-label JSON (up to thousands of labels): lists and joins naming a version defer it.
MODEL_VERSION_LIST_DEFER = ("thresholds", "tag_thresholds", "disabled_labels")


class TagMapping(models.Model):
    """An external label (a Danbooru tag, a theme model's label) mapped to an internal tag, or ignored."""

    source = models.CharField(max_length=64, default="danbooru")
    external_tag = models.CharField(max_length=255)
    tag = models.ForeignKey(Tag, null=True, blank=True, on_delete=models.CASCADE, help_text="Empty: ignore.")
    confidence = models.FloatField(default=1.0, help_text="Multiplies the model's confidence.")
    automatic = models.BooleanField(
        default=False, help_text="Made by a tagging run for an unmapped label (to the tag of its own name)."
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["source", "external_tag"]
        constraints = [models.UniqueConstraint(fields=["source", "external_tag"], name="unique_tag_mapping")]

    def __str__(self) -> str:
        return f"{self.source}:{self.external_tag} -> {self.tag.name if self.tag else 'ignore'}"


class UnmappedTag(models.Model):
    """A label a model predicted that has no mapping yet: the moderators' worklist."""

    source = models.CharField(max_length=64)
    external_tag = models.CharField(max_length=255)
    category = models.SmallIntegerField(choices=Tag.DanbooruCategory.choices, default=0)
    first_seen = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["source", "external_tag"]
        constraints = [models.UniqueConstraint(fields=["source", "external_tag"], name="unique_unmapped_tag")]

    def __str__(self) -> str:
        return f"{self.source}:{self.external_tag}"


class HeldPrediction(models.Model):
    """A prediction of an unmapped label, kept until the label is mapped (then it becomes a suggestion)."""

    unmapped = models.ForeignKey(UnmappedTag, on_delete=models.CASCADE, related_name="predictions")
    image = models.ForeignKey(Image, on_delete=models.CASCADE)
    model_version = models.ForeignKey(MLModelVersion, on_delete=models.CASCADE)
    confidence = models.FloatField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["unmapped", "image", "model_version"], name="unique_held_prediction")
        ]

    def __str__(self) -> str:
        return f"{self.image_id}:{self.unmapped} ({self.confidence:.2f})"


class ImageRun(models.Model):
    """That a model version has processed an image: written with its suggestions, so a rerun skips it."""

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="model_runs")
    model_version = models.ForeignKey(MLModelVersion, on_delete=models.CASCADE, related_name="runs")
    rating = models.CharField(max_length=16, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["image", "model_version"], name="unique_image_run")]

    def __str__(self) -> str:
        return f"{self.image_id} by {self.model_version}"


class TagSuggestion(Proposal):
    """A tag a model proposes for an image; approval tags the image (with the tags it implies)."""

    # No index of their own: the unique (image, tag, model version), (tag, status) and (model version, status) lead
    # with each; a decision rewrites every index of its rows (status changes), so each one costs every approval.
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="suggestions", db_index=False)
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="suggestions", db_index=False)
    model_version = models.ForeignKey(
        MLModelVersion, on_delete=models.CASCADE, related_name="suggestions", db_index=False
    )
    external_tag = models.CharField(max_length=255, help_text="The model's own label.")
    category = models.SmallIntegerField(choices=Tag.DanbooruCategory.choices, default=0)
    confidence = models.FloatField(db_index=True)

    class Meta:
        ordering = ["image", "category", "-confidence"]
        permissions = [("review_tagsuggestion", "Can approve or reject tag suggestions")]
        constraints = [models.UniqueConstraint(fields=["image", "tag", "model_version"], name="unique_tag_suggestion")]
        indexes = [
            models.Index(fields=["status", "image"]),
            models.Index(fields=["model_version", "status"]),
            models.Index(fields=["tag", "status"]),
            # The review queue reads pending rows only (86 % of a million): oldest first, by tag, by model.
            models.Index(fields=["id"], condition=Q(status="pending"), name="suggestion_pending_id"),
            models.Index(fields=["tag", "image"], condition=Q(status="pending"), name="suggestion_pending_tag"),
            models.Index(
                fields=["model_version", "image"], condition=Q(status="pending"), name="suggestion_pending_model"
            ),
            # The review core's listing and hub: one producer's pending rows in id order (keyset pages, capped counts).
            models.Index(fields=["producer", "id"], condition=Q(status="pending"), name="suggestion_pending_producer"),
            # The queue's "tag or label prefix" filter: pending rows by label prefix, or-ed with the tag index.
            models.Index(
                fields=["external_tag"],
                condition=Q(status="pending"),
                name="suggestion_pending_label",
                opclasses=["varchar_pattern_ops"],
            ),
        ]

    def __str__(self) -> str:
        return f"{self.image_id}:{self.tag.name} ({self.confidence:.2f}, {self.status})"

    def save(self, *args, **kwargs):
        """The producer is the model version's (bulk inserts set it themselves)."""
        if self.producer_id is None and self.model_version_id is not None:
            versions = MLModelVersion.objects.values_list("producer_id", flat=True)
            self.producer_id = versions.get(pk=self.model_version_id)
        super().save(*args, **kwargs)


TEXT_FIELDS = ("title", "caption", "description")
STAGES = ("title", "caption", "keywords", "description")
PROFILE_PROMPTS = ("title_prompt", "caption_prompt", "keywords_prompt", "description_prompt")
PROFILE_VERSIONED = (*PROFILE_PROMPTS, "max_keywords", "caption_max_chars", "description_max_chars", "language", "tone")


class PromptProfile(models.Model):
    """The four stage instructions, keyword limit, language and tone for one catalogue style (travel, studio, ...).

    Versioned: any change to what the model is asked bumps `version`, and `name-vN` is part of the producer, so
    proposals made under an older wording stay told apart from newer ones.
    """

    name = models.SlugField(max_length=24, unique=True)
    version = models.PositiveIntegerField(default=1, editable=False)
    description = models.CharField(max_length=255, blank=True, help_text="What the profile is for.")
    title_prompt = models.TextField()
    caption_prompt = models.TextField()
    keywords_prompt = models.TextField()
    description_prompt = models.TextField()
    max_keywords = models.PositiveSmallIntegerField(default=15)
    caption_max_chars = models.PositiveIntegerField(default=300)
    description_max_chars = models.PositiveIntegerField(default=1200)
    language = models.CharField(max_length=16, default="en", help_text="ISO 639-1 code of the answers' language.")
    tone = models.CharField(max_length=100, blank=True, help_text="e.g. neutral, warm, technical.")
    builtin = models.BooleanField(default=False, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.label

    def save(self, *args, **kwargs):
        if self.pk is not None:
            before = PromptProfile.objects.filter(pk=self.pk).values(*PROFILE_VERSIONED).first()
            if before and any(before[key] != getattr(self, key) for key in PROFILE_VERSIONED):
                self.version += 1
        super().save(*args, **kwargs)

    @property
    def label(self) -> str:
        """What producers record as the prompt version."""
        return f"{self.name}-v{self.version}"


class TextProposal(Proposal):
    """A title, caption or description a VLM proposes for an image; approval stores it on the image (and the text
    it replaced here, so taking the approval back restores that)."""

    class Field(models.TextChoices):
        TITLE = "title", "title"
        CAPTION = "caption", "caption"
        DESCRIPTION = "description", "description"

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="text_proposals")
    field = models.CharField(max_length=16, choices=Field.choices)
    text = models.TextField(help_text="What approval stores (the model's answer, or a moderator's edit of it).")
    model_text = models.TextField(help_text="The model's own answer.")
    previous_text = models.TextField(blank=True, help_text="The image's text before the approval.")

    class Meta:
        ordering = ["image", "field", "-id"]
        permissions = [("review_textproposal", "Can approve, edit or reject proposed titles, captions, descriptions")]
        constraints = [
            models.UniqueConstraint(
                fields=["image", "field", "producer"], condition=Q(status="pending"), name="unique_pending_text"
            ),
        ]
        indexes = [
            models.Index(fields=["producer", "id"], condition=Q(status="pending"), name="text_pending_producer"),
            models.Index(fields=["image", "field", "status"]),
        ]

    def __str__(self) -> str:
        return f"{self.image_id}:{self.field} ({self.status})"
