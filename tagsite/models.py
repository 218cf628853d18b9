"""The library: images, tags, aliases, implications, per-stage status and job records."""

from django.conf import settings
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Replace

from tagsite.features import llm_role_choices

# The approved texts as one tsvector ('simple': no stemming, any language); searches must use the same expression
# so the planner uses the GIN index.
TEXT_SEARCH_VECTOR = SearchVector("title", "caption", "description", config="simple")


class Tag(models.Model):
    class DanbooruCategory(models.IntegerChoices):
        GENERAL = 0, "general"
        ARTIST = 1, "artist"
        COPYRIGHT = 3, "copyright"
        CHARACTER = 4, "character"
        META = 5, "meta"
        RATING = 9, "rating"

    name = models.CharField(max_length=255, unique=True, help_text="Canonical, normalised name.")
    display_name = models.CharField(max_length=255)
    danbooru_category = models.SmallIntegerField(choices=DanbooruCategory.choices, default=DanbooruCategory.GENERAL)
    usage_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    # The words of the name and display name (underscores split them), stored: a search by word beginnings reads
    # its matches from the GIN index, and a most-used-first page filters rows without parsing each name again.
    words = models.GeneratedField(
        expression=SearchVector(
            Replace("name", Value("_"), Value(" ")), Replace("display_name", Value("_"), Value(" ")), config="simple"
        ),
        output_field=SearchVectorField(),
        db_persist=True,
    )

    class Meta:
        ordering = ["-usage_count", "name"]
        indexes = [
            # Prefix searches use the `_like` index Django makes for the unique name (a second one cost every write).
            # Tag lists, most used first (/tag_categorize, admin, API): a page is the index's first rows.
            models.Index(F("usage_count").desc(), "name", name="tag_usage_order"),
            GinIndex(fields=["words"], name="tag_words"),
        ]

    def __str__(self) -> str:
        return self.display_name


class TagAlias(models.Model):
    """`antecedent` is rewritten to `tag` wherever a tag name comes in. Never chained."""

    antecedent = models.CharField(max_length=255, unique=True, help_text="Normalised name that is rewritten.")
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="aliases")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "tag aliases"
        ordering = ["antecedent"]

    def __str__(self) -> str:
        return f"{self.antecedent} -> {self.tag.name}"


class TagImplication(models.Model):
    """An image tagged `antecedent` is also tagged `consequent`."""

    antecedent = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="implies")
    consequent = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="implied_by")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["antecedent", "consequent"], name="unique_implication"),
            models.CheckConstraint(condition=~Q(antecedent=models.F("consequent")), name="implication_not_self"),
        ]

    def __str__(self) -> str:
        return f"{self.antecedent.name} => {self.consequent.name}"


class Image(models.Model):
    class Status(models.TextChoices):
        OK = "ok", "ok"
        FAILED = "failed", "failed"
        DUPLICATE = "duplicate", "duplicate"
        MISSING = "missing", "missing"

    path = models.TextField(unique=True, help_text="Absolute path of the file.")
    sha256 = models.CharField(max_length=64, db_index=True, blank=True)
    size = models.BigIntegerField(default=0, help_text="Bytes.")
    mtime = models.FloatField(default=0, help_text="File modification time, for change detection.")
    format = models.CharField(max_length=16, blank=True)
    width = models.PositiveIntegerField(null=True, blank=True, help_text="As displayed (EXIF rotation applied).")
    height = models.PositiveIntegerField(null=True, blank=True)
    orientation = models.PositiveSmallIntegerField(default=1, help_text="EXIF orientation, 1-8.")
    frames = models.PositiveIntegerField(default=1)
    rating = models.CharField(
        max_length=16, blank=True, db_index=True, help_text="general/sensitive/questionable/explicit"
    )
    thumbnail = models.CharField(max_length=255, blank=True, help_text="Path under MEDIA_ROOT.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OK, db_index=True)
    error = models.TextField(blank=True)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    tags = models.ManyToManyField(Tag, through="ImageTag", related_name="images")
    metadata_fingerprint = models.CharField(
        max_length=64, blank=True, help_text="Of the fields last written to the file; differs from today's: dirty."
    )
    metadata_written_at = models.DateTimeField(null=True, blank=True, help_text="When tagsite last wrote the file.")
    metadata_fallback = models.CharField(
        max_length=32, blank=True, help_text="Where the last write went instead of XMP (EXIF:UserComment), or empty."
    )
    sidecars = models.JSONField(
        default=dict, blank=True, help_text="Its XMP sidecars' [size, mtime] when last read: a rescan compares them."
    )
    # Approved texts (VLM stages after review, or typed by a person): written to the files, searched in full text.
    title = models.CharField(max_length=255, blank=True)
    caption = models.TextField(blank=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["sha256"], condition=Q(status="ok"), name="unique_ok_image_content"),
        ]
        indexes = [GinIndex(TEXT_SEARCH_VECTOR, name="image_text_search")]
        permissions = [("write_metadata", "Can write approved tags into image files")]

    def __str__(self) -> str:
        return self.path

    @property
    def filename(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    @property
    def thumbnail_url(self) -> str:
        """The thumbnail's link with its content version: browsers cache it for a year (see the view)."""
        from tagsite.links import object_url

        return f"{object_url('image-thumbnail', self.pk)}?v={self.sha256[:16]}" if self.thumbnail else ""


class ImageTag(models.Model):
    """A tag on an image, with where it came from."""

    class Source(models.TextChoices):
        MANUAL = "manual", "manual"
        FILE = "file", "read from the file"
        IMPLIED = "implied", "implied"
        MODEL = "model", "approved model suggestion"
        MERGE = "merge", "tag merge"

    # No index of their own: (image, tag) and (tag, image) lead with each (every index costs each approval's insert).
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="image_tags", db_index=False)
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="image_tags", db_index=False)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.MANUAL)
    added_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    model_name = models.CharField(max_length=255, blank=True, help_text="Model that suggested it, if any.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["image", "tag"], name="unique_image_tag")]
        indexes = [models.Index(fields=["tag", "image"])]

    def __str__(self) -> str:
        return f"{self.image_id}:{self.tag.name}"


class ImageStage(models.Model):
    """Status and last error of one processing stage (ingest, thumbnail, keywords, tagging, ...) of an image."""

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"
        SKIPPED = "skipped", "skipped"

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="stages")
    stage = models.CharField(max_length=32)
    status = models.CharField(max_length=16, choices=Status.choices)
    error = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["image", "stage"], name="unique_image_stage")]
        indexes = [models.Index(fields=["stage", "status"])]

    def __str__(self) -> str:
        return f"{self.image_id}:{self.stage}={self.status}"


class Job(models.Model):
    """A long operation (import, tagging, categorisation, ...) with live progress."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        PARTIAL = "partial", "partial (some items failed)"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    kind = models.CharField(max_length=64, db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    params = models.JSONField(default=dict, blank=True)
    current = models.PositiveIntegerField(default=0)
    total = models.PositiveIntegerField(null=True, blank=True)
    counts = models.JSONField(default=dict, blank=True)
    errors = models.JSONField(default=list, blank=True, help_text="The first errors, as {item, error}.")
    error_count = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True)
    advice = models.TextField(blank=True, help_text="What to do about the errors, shown when the job did not succeed.")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-id"]
        permissions = [("cancel_job", "Can cancel a queued or running job")]

    def __str__(self) -> str:
        return f"{self.kind} #{self.pk} ({self.status})"

    @property
    def finished(self) -> bool:
        """A redelivered task skips a finished job but re-runs one a killed worker left running."""
        return self.status not in (Job.Status.QUEUED, Job.Status.RUNNING)

    @property
    def percent(self) -> float | None:
        if not self.total:
            return None
        return round(100 * self.current / self.total, 1)


class LLMEndpoint(models.Model):
    """A chat/embeddings server. The API key lives in the environment; only the variable's name is stored."""

    class Kind(models.TextChoices):
        OPENAI = "openai", "OpenAI-compatible"
        GEMINI = "gemini", "Gemini (google-genai)"

    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.OPENAI)
    base_url = models.CharField(
        max_length=255,
        blank=True,
        default="http://127.0.0.1:1234/v1",
        help_text="OpenAI-compatible: the /v1 base URL. Gemini: empty for Google's API.",
    )
    model = models.CharField(max_length=255, help_text="Model id as the server lists it.")
    api_key_env = models.CharField(
        max_length=64,
        blank=True,
        help_text="Name of the environment variable that holds the API key, e.g. GEMINI_API_KEY.",
    )
    timeout = models.FloatField(default=120, help_text="Seconds per request.")
    max_parallel = models.PositiveSmallIntegerField(
        default=4, help_text="Requests in flight at once across all workers (the server's parallel slots)."
    )
    temperature = models.FloatField(default=0.1)
    max_tokens = models.PositiveIntegerField(default=4096)

    class Meta:
        ordering = ["name"]
        verbose_name = "LLM endpoint"

    def __str__(self) -> str:
        return f"{self.name} ({self.model})"


class LLMRole(models.Model):
    """Which endpoint (and optionally which model on it) a stage uses. The roles are those the apps declare."""

    role = models.CharField(max_length=32, choices=llm_role_choices, unique=True)
    endpoint = models.ForeignKey(LLMEndpoint, on_delete=models.PROTECT, related_name="roles")
    model = models.CharField(max_length=255, blank=True, help_text="Overrides the endpoint's model for this role.")

    class Meta:
        ordering = ["role"]
        verbose_name = "LLM role"

    def __str__(self) -> str:
        return f"{self.role} -> {self.endpoint.name}"


class Producer(models.Model):
    """Who said it: the model (and prompt) or rule behind an AI output, one row per version of it."""

    class Kind(models.TextChoices):
        ONNX_TAGGER = "onnx_tagger", "ONNX tagger"
        CHAT = "chat", "chat LLM/VLM"
        EMBEDDING = "embedding", "embedding model"
        CLASSIFIER = "classifier", "local classifier"
        RULE = "rule", "rule"
        HUMAN_IMPORT = "human_import", "human import"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    name = models.CharField(max_length=255, help_text="The model's (or rule's) name, e.g. wd-vit-v3 or qwen2.5-vl.")
    version = models.CharField(max_length=100, blank=True)
    prompt_version = models.CharField(max_length=32, blank=True, help_text="Chat models: the prompt/profile version.")
    endpoint = models.ForeignKey(
        LLMEndpoint, null=True, blank=True, on_delete=models.SET_NULL, help_text="The registry endpoint it ran on."
    )
    model_file = models.TextField(blank=True, help_text="Local models: the file it ran.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "version", "prompt_version"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "name", "version", "prompt_version"], name="unique_producer")
        ]

    def __str__(self) -> str:
        return " ".join(
            part for part in (self.name, self.version, self.prompt_version and f"prompt {self.prompt_version}") if part
        )


class Proposal(models.Model):
    """What every AI output awaiting a human has: a status, a confidence, who proposed it and who decided.

    Each kind is a concrete table of its own with real foreign keys (TagSuggestion, CategoryProposal, ...);
    `tagsite.review` decides them all the same way and writes a `Decision` for every attempt.
    """

    class Status(models.TextChoices):
        PENDING = "pending", "pending"
        APPROVED = "approved", "approved"
        REJECTED = "rejected", "rejected"
        AUTO_APPROVED = "auto_approved", "auto-approved"

    class Via(models.TextChoices):
        PAGE = "page", "page"
        API = "api", "API"
        ADMIN = "admin", "admin"
        COMMAND = "command", "command"
        RULE = "rule", "rule"

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    confidence = models.FloatField(default=1.0)
    producer = models.ForeignKey(Producer, on_delete=models.PROTECT, related_name="+")
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    via = models.CharField(max_length=16, choices=Via.choices, blank=True)

    class Meta:
        abstract = True

    APPLIED = frozenset({Status.APPROVED, Status.AUTO_APPROVED})


class AutoApproveRule(models.Model):
    """Proposals of a kind (from one producer, or any) at or above a confidence are approved without a human.

    Applied to new pending proposals only; every approval it makes names it in the `Decision` audit.
    """

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=64, help_text="A review kind, e.g. tagsuggestion or categoryproposal.")
    producer = models.ForeignKey(
        Producer, null=True, blank=True, on_delete=models.CASCADE, help_text="Empty: any producer of the kind."
    )
    min_confidence = models.FloatField(help_text="From 0 to 1.")
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(min_confidence__gte=0, min_confidence__lte=1), name="rule_confidence_in_range"
            )
        ]

    def __str__(self) -> str:
        return self.name


class Decision(models.Model):
    """Audit: one row per decision attempt on one proposal of any kind, also those that changed nothing."""

    kind = models.CharField(max_length=64)
    object_id = models.BigIntegerField()
    previous = models.CharField(max_length=16, choices=Proposal.Status.choices, help_text="Status before.")
    status = models.CharField(max_length=16, choices=Proposal.Status.choices, help_text="Status asked for.")
    applied = models.BooleanField(help_text="False: the proposal was already in that state (nothing changed).")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    via = models.CharField(
        max_length=16, choices=Proposal.Via.choices, blank=True, help_text="Empty: from before the audit."
    )
    rule = models.ForeignKey(
        AutoApproveRule, null=True, blank=True, on_delete=models.PROTECT, help_text="The rule that auto-approved it."
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["kind", "object_id"])]

    def __str__(self) -> str:
        return f"{self.kind} #{self.object_id}: {self.previous} -> {self.status} ({self.via})"
