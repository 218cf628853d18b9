from django.contrib import admin
from django.utils.html import format_html

from emotion.models import EmotionLabel, EmotionProposal, EmotionSynonym, Face, ImageEmotion
from emotion.services import KIND
from tagsite.admin import LargeListAdmin, ReadOnlyAdmin
from tagsite.links import object_url
from tagsite.review.services import decide
from tagsite.services.lists import IMAGE_LIST_DEFER, image_ids_by_path, related_defer


class ImagePathSearch:
    """Search by part of an image's path: the images are found first (at most 1,000) and the rows filtered by
    their ids, not a match of every row's joined path."""

    search_fields = ["image__path"]

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(image_id__in=image_ids_by_path(term)), False


class SynonymInline(admin.TabularInline):
    model = EmotionSynonym
    extra = 1


@admin.register(EmotionLabel)
class EmotionLabelAdmin(admin.ModelAdmin):
    """The seven labels: their floors and synonyms are editable; the names are seed 004's contract."""

    list_display = ["name", "min_confidence", "position"]
    list_editable = ["min_confidence"]
    readonly_fields = ["name"]
    inlines = [SynonymInline]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(EmotionSynonym)
class EmotionSynonymAdmin(admin.ModelAdmin):
    list_display = ["word", "label"]
    list_filter = ["label"]
    search_fields = ["word"]


def crop_html(face_id: int, size: int = 64) -> str:
    return format_html(
        '<img src="{}" width="{}" height="{}" alt="">', object_url("emotion-face-crop", face_id), size, size
    )


@admin.register(ImageEmotion)
class ImageEmotionAdmin(ImagePathSearch, LargeListAdmin, ReadOnlyAdmin):
    list_display = ["image", "producer", "outcome", "detail", "created_at"]
    list_filter = ["outcome", "producer"]
    list_select_related = ["image", "producer"]
    list_defer = related_defer("image", IMAGE_LIST_DEFER)


@admin.register(Face)
class FaceAdmin(ImagePathSearch, LargeListAdmin, ReadOnlyAdmin):
    list_display = ["crop", "image", "index", "x", "y", "width", "height", "detection_confidence", "note"]
    list_select_related = ["image"]
    list_defer = ("probabilities", *related_defer("image", IMAGE_LIST_DEFER))

    @admin.display(description="face")
    def crop(self, face: Face) -> str:
        return crop_html(face.pk)


@admin.register(EmotionProposal)
class EmotionProposalAdmin(ImagePathSearch, LargeListAdmin):
    list_display = ["crop", "image", "label", "proposed_label", "confidence", "producer", "status", "decided_by", "via"]
    list_filter = ["status", "label", "producer"]
    list_select_related = ["face", "image", "producer", "decided_by"]
    list_prefetch_related = ("label", "proposed_label")  # seven labels: no joins to plan
    list_defer = ("face__probabilities", *related_defer("image", IMAGE_LIST_DEFER))
    raw_id_fields = ["face", "image", "job"]
    # Decisions go through the actions (the review core), never through an edited status.
    readonly_fields = [
        "status",
        "producer",
        "proposed_label",
        "answer",
        "decided_by",
        "decided_at",
        "via",
        "created_at",
    ]
    actions = ["approve", "reject"]

    @admin.display(description="face")
    def crop(self, proposal: EmotionProposal) -> str:
        return crop_html(proposal.face_id)

    def has_review_permission(self, request) -> bool:
        return request.user.has_perm("emotion.review_emotion")

    @admin.action(description="Approve the selected labels", permissions=["review"])
    def approve(self, request, queryset):
        outcome = decide(
            kind=KIND, ids=queryset.values_list("pk", flat=True), status="approved", user=request.user, via="admin"
        )
        self.message_user(request, f"{len(outcome)} label(s) approved.")

    @admin.action(description="Reject the selected labels", permissions=["review"])
    def reject(self, request, queryset):
        outcome = decide(
            kind=KIND, ids=queryset.values_list("pk", flat=True), status="rejected", user=request.user, via="admin"
        )
        self.message_user(request, f"{len(outcome)} label(s) rejected.")
