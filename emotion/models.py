"""Emotion labels of faces (seed 004): the seven labels and their synonyms as data, what each run found in an
image (faces with boxes, or "no face"), and the proposed label per face on the review core."""

from django.db import models
from django.db.models import Q

from tagsite.models import Image, Producer, Proposal


class EmotionLabel(models.Model):
    """One of the seven labels seed 004's training pipeline accepts. A face whose best label's probability is
    under the label's floor gets no proposal (the local classifier is reliable on smiles, much less elsewhere)."""

    name = models.CharField(max_length=32, unique=True)
    position = models.PositiveSmallIntegerField(default=0, help_text="Order on the review screen.")
    min_confidence = models.FloatField(
        default=0.5, help_text="Confidence floor (0-1): a face whose best label is below it gets no proposal."
    )

    class Meta:
        ordering = ["position", "name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(min_confidence__gte=0, min_confidence__lte=1), name="emotion_floor_in_range"
            )
        ]

    def __str__(self) -> str:
        return self.name


class EmotionSynonym(models.Model):
    """Another word for a label (`serious` -> neutral): an answer in other words maps through this table."""

    word = models.CharField(max_length=64, unique=True, help_text="Lower case, as a model might answer it.")
    label = models.ForeignKey(EmotionLabel, on_delete=models.CASCADE, related_name="synonyms")

    class Meta:
        ordering = ["word"]

    def __str__(self) -> str:
        return f"{self.word} -> {self.label.name}"


class ImageEmotion(models.Model):
    """What one producer's run made of one image: its faces, "no face", or why it failed. Written with the
    faces and proposals in one transaction, so a rerun or a redelivered task skips the image."""

    class Outcome(models.TextChoices):
        LABELLED = "labelled", "labelled"
        NO_FACE = "no_face", "no face"
        FAILED = "failed", "failed"

    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="emotion_runs")
    producer = models.ForeignKey(Producer, on_delete=models.PROTECT, related_name="+")
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    detail = models.TextField(blank=True, help_text="Why it failed, or the off-list words a model answered.")
    job = models.ForeignKey("tagsite.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["image", "producer"], name="unique_image_emotion_run")]

    def __str__(self) -> str:
        return f"{self.image_id} by {self.producer}: {self.outcome}"


class Face(models.Model):
    """A face found in an image, its box in the displayed image's pixels (EXIF orientation applied)."""

    run = models.ForeignKey(ImageEmotion, on_delete=models.CASCADE, related_name="faces")
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="faces")
    index = models.PositiveSmallIntegerField(help_text="0 is the largest face (the image's label in the CSV).")
    x = models.PositiveIntegerField()
    y = models.PositiveIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    detection_confidence = models.FloatField()
    probabilities = models.JSONField(default=dict, blank=True, help_text="Every label's probability, if known.")
    note = models.CharField(max_length=255, blank=True, help_text="Why it has no proposal (under the floor, ...).")

    class Meta:
        ordering = ["image_id", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="unique_face_index")]

    def __str__(self) -> str:
        return f"face {self.index} of image {self.image_id}"

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.width, self.height


class EmotionProposal(Proposal):
    """A face's proposed label. A moderator may change the label before approving; `proposed_label` keeps
    what the model said."""

    face = models.OneToOneField(Face, on_delete=models.CASCADE, related_name="proposal")
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="emotion_proposals")
    label = models.ForeignKey(EmotionLabel, on_delete=models.PROTECT, related_name="proposals")
    proposed_label = models.ForeignKey(EmotionLabel, on_delete=models.PROTECT, related_name="+")
    answer = models.CharField(max_length=64, blank=True, help_text="A chat model's word, when a synonym mapped it.")

    class Meta:
        ordering = ["-id"]
        permissions = [("review_emotion", "Can approve, relabel or reject emotion labels")]
        indexes = [models.Index(fields=["status", "label"]), models.Index(fields=["status", "producer"])]

    def __str__(self) -> str:
        return f"{self.face} -> {self.label.name} ({self.status})"
