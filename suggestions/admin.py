from django.contrib import admin, messages
from django.contrib.auth import get_user_model

from suggestions import services
from suggestions.models import (
    HeldPrediction,
    ImageRun,
    MLModelVersion,
    PromptProfile,
    TagMapping,
    TagSuggestion,
    TextProposal,
    UnmappedTag,
)
from tagsite.admin import (
    LargeListAdmin,
    RatingFilter,
    ReadOnlyAdmin,
    ValuesFilter,
    defer_all_but,
    small_table,
    thumbnail_html,
)
from tagsite.models import Image, Tag
from tagsite.review import services as review
from tagsite.services.lists import IMAGE_LIST_DEFER, related_defer


class LabelSourceFilter(ValuesFilter):
    """The label sources the installed models look their labels up in."""

    title = "source"
    parameter_name = "source"

    def values(self):
        return [(source, source) for source in services.label_sources()]


VERSION_NAME = ("name", "version")  # MLModelVersion.__str__


class ModelVersionFilter(admin.RelatedFieldListFilter):
    """The model versions by name, without loading each one's per-label thresholds."""

    def field_choices(self, field, request, model_admin):
        return [(version.pk, str(version)) for version in small_table(request, MLModelVersion, VERSION_NAME).values()]


class HeldSourceFilter(LabelSourceFilter):
    parameter_name = "unmapped__source"


class ReviewActions:
    """Deciding (suggestions and worklist labels alike) needs the moderators' review permission, not `change`."""

    def has_review_permission(self, request):
        return request.user.has_perm("suggestions.review_tagsuggestion")


@admin.register(MLModelVersion)
class MLModelVersionAdmin(admin.ModelAdmin):
    list_display = ["name", "version", "kind", "input_size", "fixed_batch", "label_count", "use_mcut", "active"]
    list_filter = ["kind", "active"]
    list_editable = ["active", "use_mcut"]
    search_fields = ["name", "version", "sha256"]
    readonly_fields = [
        "kind", "model_file", "labels_file", "sha256", "input_size", "fixed_batch", "label_count",
        "source", "producer", "created_at",
    ]  # fmt: skip


@admin.register(TagMapping)
class TagMappingAdmin(LargeListAdmin):
    list_display = ["external_tag", "source", "tag", "confidence", "created_by", "created_at"]
    list_select_related = ["tag", "created_by"]
    list_filter = [LabelSourceFilter]
    search_fields = ["external_tag", "tag__name"]
    autocomplete_fields = ["tag"]
    readonly_fields = ["created_by", "created_at"]

    def save_model(self, request, obj, form, change):
        """Through the service, so predictions held for the label are released."""
        mapping = services.set_mapping(obj.source, obj.external_tag, obj.tag, request.user, obj.confidence)
        obj.pk = mapping.pk


@admin.register(UnmappedTag)
class UnmappedTagAdmin(ReviewActions, LargeListAdmin):
    list_display = ["external_tag", "source", "category", "waiting", "first_seen"]
    list_filter = [LabelSourceFilter, "category"]
    search_fields = ["external_tag"]
    actions = ["map_same_name", "ignore"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(waiting=services.images_waiting())

    @admin.display(ordering="waiting", description="images waiting")
    def waiting(self, entry):
        return entry.waiting

    @admin.action(description="Map to tags of their own names", permissions=["review"])
    def map_same_name(self, request, queryset):
        self.message_user(request, f"{services.resolve_worklist(queryset, 'same_name', user=request.user)} mapped")

    @admin.action(description="Ignore these labels", permissions=["review"])
    def ignore(self, request, queryset):
        count = services.resolve_worklist(queryset, "ignore", user=request.user)
        self.message_user(request, f"{count} ignored", messages.WARNING)


@admin.register(TagSuggestion)
class TagSuggestionAdmin(ReviewActions, LargeListAdmin):
    list_display = ["thumb", "tag", "external_tag", "confidence", "model_version", "status", "decided_by", "via"]
    list_filter = ["status", ("model_version", ModelVersionFilter), "category"]
    search_fields = ["tag__name"]  # by tag name or alias prefix: LargeListAdmin
    tag_search = "tag"
    ordering = ["-id"]  # newest first through the primary key, not a sort of a million rows
    raw_id_fields = ["image", "tag"]
    readonly_fields = [f.name for f in TagSuggestion._meta.fields]
    actions = ["approve", "reject"]
    list_select_related = ["image", "tag", "decided_by"]
    list_small_relations = {"model_version": VERSION_NAME}
    # the columns shown (and the rows' names, for the checkboxes): a page read 60 columns, five dates a row
    list_defer = (
        *defer_all_but(
            TagSuggestion, ("status", "via", "external_tag", "confidence", "model_version", *list_select_related)
        ),
        *defer_all_but(Image, ("thumbnail", "sha256"), "image"),
        *defer_all_but(Tag, ("name", "display_name"), "tag"),
        *defer_all_but(get_user_model(), (get_user_model().USERNAME_FIELD,), "decided_by"),
    )

    @admin.display(description="image")
    def thumb(self, suggestion):
        return thumbnail_html(suggestion.image)

    @admin.action(description="Approve (tag the images)", permissions=["review"])
    def approve(self, request, queryset):
        count = services.decide(queryset, TagSuggestion.Status.APPROVED, request.user, via="admin")
        self.message_user(request, f"{count} approved")

    @admin.action(description="Reject", permissions=["review"])
    def reject(self, request, queryset):
        count = services.decide(queryset, TagSuggestion.Status.REJECTED, request.user, via="admin")
        self.message_user(request, f"{count} rejected")


@admin.register(HeldPrediction)
class HeldPredictionAdmin(LargeListAdmin, ReadOnlyAdmin):
    list_display = ["unmapped", "image", "model_version", "confidence"]
    list_filter = [("model_version", ModelVersionFilter), HeldSourceFilter]
    search_fields = ["unmapped__external_tag", "image__path"]
    list_select_related = ["unmapped", "image"]
    list_small_relations = {"model_version": VERSION_NAME}
    list_defer = related_defer("image", IMAGE_LIST_DEFER)


@admin.register(ImageRun)
class ImageRunAdmin(LargeListAdmin, ReadOnlyAdmin):
    list_display = ["image", "model_version", "rating", "created_at"]
    list_filter = [("model_version", ModelVersionFilter), RatingFilter]
    search_fields = ["image__path"]
    list_select_related = ["image"]
    list_small_relations = {"model_version": VERSION_NAME}
    list_defer = related_defer("image", IMAGE_LIST_DEFER)


@admin.register(PromptProfile)
class PromptProfileAdmin(admin.ModelAdmin):
    """Profiles are edited and added here; a change to what the model is asked bumps the version (a new producer)."""

    list_display = ["name", "version", "language", "tone", "max_keywords", "builtin", "updated_at"]
    readonly_fields = ["version", "builtin", "updated_at"]
    search_fields = ["name", "description"]


@admin.register(TextProposal)
class TextProposalAdmin(LargeListAdmin):
    list_display = ["thumb", "field", "short_text", "producer", "status", "decided_by", "via"]
    list_filter = ["status", "field", "producer"]
    search_fields = ["text"]
    ordering = ["-id"]
    raw_id_fields = ["image"]
    readonly_fields = [f.name for f in TextProposal._meta.fields]
    actions = ["approve", "reject"]
    list_select_related = ["image", "producer", "decided_by"]
    list_defer = related_defer("image", IMAGE_LIST_DEFER)

    @admin.display(description="image")
    def thumb(self, proposal):
        return thumbnail_html(proposal.image)

    @admin.display(description="text")
    def short_text(self, proposal):
        return proposal.text if len(proposal.text) <= 120 else proposal.text[:119] + "…"

    def has_review_permission(self, request):
        return request.user.has_perm("suggestions.review_textproposal")

    @admin.action(description="Approve (store on the images)", permissions=["review"])
    def approve(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        outcome = review.decide(kind="textproposal", ids=ids, status="approved", user=request.user, via="admin")
        self.message_user(request, f"{len(outcome)} approved")

    @admin.action(description="Reject", permissions=["review"])
    def reject(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        outcome = review.decide(kind="textproposal", ids=ids, status="rejected", user=request.user, via="admin")
        self.message_user(request, f"{len(outcome)} rejected")
