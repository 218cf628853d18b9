"""Admin: merge proposals (members inline; representative and included members editable while pending, through
the same services as the merge screen; approve/reject actions through the review core), must-not-merge pairs,
embedding spaces, and the similar tags on the tag page."""

from django.contrib import admin, messages
from django.db.models import Q
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from dedupe import services
from dedupe.api import write_merged_files
from dedupe.models import EmbeddingSpace, MergeMember, MergeProposal, MustNotMerge
from tagsite.admin import LargeListAdmin, ReadOnlyAdmin, TagAdmin
from tagsite.models import Proposal, Tag
from tagsite.review.services import decide
from tagsite.services.lists import tag_ids_by_prefix


class MemberInline(admin.TabularInline):
    model = MergeMember
    fields = ["name", "tag", "usage_count", "danbooru_category", "similarity", "reason", "included"]
    readonly_fields = ["name", "tag", "usage_count", "danbooru_category", "similarity", "reason"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        """Members are part of the proposal: whoever may see it sees them."""
        return request.user.has_perm("dedupe.view_mergeproposal")

    def has_change_permission(self, request, obj=None):
        pending = obj is None or obj.status == Proposal.Status.PENDING
        return pending and request.user.has_perm("dedupe.review_mergeproposal")


@admin.register(MergeProposal)
class MergeProposalAdmin(LargeListAdmin):
    list_display = ["__str__", "member_names", "confidence", "status", "producer", "decided_by", "via", "created_at"]
    list_filter = ["status", "producer"]
    list_select_related = ["producer", "decided_by"]
    list_defer = ("excluded", "undo")
    search_fields = ["representative__name"]
    tag_search = "representative"
    inlines = [MemberInline]
    fields = ["representative", "status", "confidence", "producer", "similar_left_out", "decided_by", "decided_at"]
    readonly_fields = ["status", "confidence", "producer", "similar_left_out", "decided_by", "decided_at"]
    raw_id_fields = ["representative"]
    actions = ["approve", "approve_and_write", "reject"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("members")

    @admin.display(description="members")
    def member_names(self, proposal: MergeProposal) -> str:
        return ", ".join(m.name for m in proposal.members.all() if m.included)

    @admin.display(description="similar tags not included")
    def similar_left_out(self, proposal: MergeProposal) -> str:
        return ", ".join(f"{e['name']} ({e['similarity']:.3f})" for e in proposal.excluded) or "-"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return request.user.has_perm("dedupe.review_mergeproposal") and (
            obj is None or obj.status == Proposal.Status.PENDING
        )

    def has_review_permission(self, request) -> bool:
        return request.user.has_perm("dedupe.review_mergeproposal")

    def save_model(self, request, obj, form, change):
        """The representative goes through the service (it must be an included member)."""
        if "representative" in form.changed_data and obj.representative_id:
            try:
                services.set_representative(obj, obj.representative_id)
            except services.MergeError as exc:
                messages.error(request, str(exc))

    def save_formset(self, request, form, formset, change):
        """Unticking `included` drops a member (remembered as must-not-merge); ticking adds it back."""
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []  # for admin's log
        for member_form in formset.forms:
            if "included" not in member_form.changed_data or not member_form.instance.tag_id:
                continue
            member = member_form.instance
            try:
                if member.included:
                    services.add_member(form.instance, member.tag_id)
                else:
                    services.drop_member(form.instance, member.tag_id, request.user)
            except services.MergeError as exc:
                messages.error(request, str(exc))

    def _decide(self, request, queryset, status: str, write: bool = False) -> None:
        ids = list(queryset.values_list("pk", flat=True))
        outcome = decide(kind="mergeproposal", ids=ids, status=status, user=request.user, via=Proposal.Via.ADMIN)
        self.message_user(request, f"{len(outcome)} merge(s) {status}.")
        for reason in outcome.refused.values():
            self.message_user(request, reason, messages.WARNING)
        if write and (job := write_merged_files(outcome.changed, request.user)):
            self.message_user(request, f"Writing the affected files: job #{job.pk}.")

    @admin.action(description="Approve the selected merges", permissions=["review"])
    def approve(self, request, queryset):
        self._decide(request, queryset, Proposal.Status.APPROVED)

    @admin.action(description="Approve the selected merges and write the affected files", permissions=["review"])
    def approve_and_write(self, request, queryset):
        self._decide(request, queryset, Proposal.Status.APPROVED, write=True)

    @admin.action(
        description="Reject the selected merges (their pairs are never proposed again)", permissions=["review"]
    )
    def reject(self, request, queryset):
        self._decide(request, queryset, Proposal.Status.REJECTED)


@admin.register(MustNotMerge)
class MustNotMergeAdmin(LargeListAdmin):
    list_display = ["tag_a", "tag_b", "created_by", "created_at"]
    list_select_related = ["tag_a", "tag_b", "created_by"]
    search_fields = ["tag_a__name", "tag_b__name"]  # by tag name or alias prefix, either side of the pair
    raw_id_fields = ["tag_a", "tag_b"]

    def get_search_results(self, request, queryset, search_term):
        """The tags are found first (by name or alias prefix), the pairs filtered by their ids."""
        if not search_term.strip():
            return queryset, False
        tags = tag_ids_by_prefix(search_term)
        return queryset.filter(Q(tag_a_id__in=tags) | Q(tag_b_id__in=tags)), False


@admin.register(EmbeddingSpace)
class EmbeddingSpaceAdmin(ReadOnlyAdmin):
    list_display = ["producer", "dimensions", "prefix", "active", "created_at"]
    actions = ["activate"]

    @admin.action(description="Make the selected space the active one", permissions=["review"])
    def activate(self, request, queryset):
        services.activate_space(queryset.first())
        self.message_user(request, "Active space changed; run embed_tags to fill it.")

    def has_review_permission(self, request) -> bool:
        return request.user.has_perm("dedupe.review_mergeproposal")


class TagWithSimilarAdmin(TagAdmin):
    """The core's tag admin plus the tag's nearest tags in the active embedding space."""

    readonly_fields = [*TagAdmin.readonly_fields, "similar_tags"]

    @admin.display(description="similar tags")
    def similar_tags(self, tag: Tag) -> str:
        found = services.similar_tags(tag, k=10) if tag.pk else []
        if not found:
            return "-"
        return format_html_join(
            ", ",
            '<a href="{}">{}</a> ({})',
            ((reverse("admin:tagsite_tag_change", args=[s.tag.pk]), s.tag.name, f"{s.similarity:.3f}") for s in found),
        ) + format_html(' <span class="help">API: {}</span>', reverse("api-tag-similar", args=[tag.pk]))


admin.site.unregister(Tag)
admin.site.register(Tag, TagWithSimilarAdmin)
