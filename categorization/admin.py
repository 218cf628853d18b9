from django.contrib import admin

from categorization import services
from categorization.models import CachedAnswer, CategoryProposal, ExtendedCategory


@admin.register(ExtendedCategory)
class ExtendedCategoryAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "description", "group"]
    list_filter = ["group"]
    search_fields = ["code", "name", "description"]


@admin.register(CategoryProposal)
class CategoryProposalAdmin(admin.ModelAdmin):
    list_display = ["tag", "category", "confidence", "model", "status", "reviewer", "created_at"]
    list_filter = ["status", "category", "model"]
    search_fields = ["tag__name"]
    raw_id_fields = ["tag", "job"]
    readonly_fields = ["reviewer", "reviewed_at", "created_at"]
    actions = ["accept", "reject"]

    @admin.action(description="Accept the selected proposals (apply their category)")
    def accept(self, request, queryset):
        self.message_user(request, f"{services.accept_proposals(queryset, request.user)} proposal(s) accepted.")

    @admin.action(description="Reject the selected proposals")
    def reject(self, request, queryset):
        self.message_user(request, f"{services.reject_proposals(queryset, request.user)} proposal(s) rejected.")


@admin.register(CachedAnswer)
class CachedAnswerAdmin(admin.ModelAdmin):
    list_display = ["tag_name", "category", "confidence", "model", "prompt_version", "created_at"]
    list_filter = ["model", "prompt_version"]
    search_fields = ["tag_name"]
