from django.contrib import admin
from django.contrib.auth import get_user_model

from categorization import services
from categorization.models import CachedAnswer, CategorizerEvaluation, CategoryProposal, ExtendedCategory, TagCategory
from tagsite.admin import LargeListAdmin, ValuesFilter, defer_all_but, small_table
from tagsite.models import Producer, Tag
from tagsite.services.tags import normalize_tag_name


@admin.register(ExtendedCategory)
class ExtendedCategoryAdmin(admin.ModelAdmin):
    list_display = ["code", "name", "description", "group"]
    list_filter = ["group"]
    search_fields = ["code", "name", "description"]


@admin.register(TagCategory)
class TagCategoryAdmin(LargeListAdmin):
    """Categorised tags by category (the core Tag admin knows no categories)."""

    list_display = ["tag", "category"]
    list_filter = ["category"]
    list_select_related = ["tag", "category"]
    search_fields = ["tag__name"]  # by tag name or alias prefix: LargeListAdmin
    tag_search = "tag"
    raw_id_fields = ["tag"]


CATEGORY_CODE = ("code",)  # ExtendedCategory.__str__
CATEGORY_FIELDS = ("category", "knn_category", "llm_category", "second_category")  # the proposal and its votes


class CategoryFilter(admin.RelatedFieldListFilter):
    """The categories by code, in their order, from the page's one read of them."""

    def field_choices(self, field, request, model_admin):
        return [
            (category.pk, str(category)) for category in small_table(request, ExtendedCategory, CATEGORY_CODE).values()
        ]


class ProducerFilter(admin.RelatedFieldListFilter):
    """The producers by name, reading only the columns of their names."""

    def field_choices(self, field, request, model_admin):
        return [(producer.pk, str(producer)) for producer in Producer.objects.only("name", "version", "prompt_version")]


@admin.register(CategoryProposal)
class CategoryProposalAdmin(LargeListAdmin):
    list_display = [
        "tag", "category", "confidence", "evidence", "producer", "status", "decided_by", "via", "created_at",
    ]  # fmt: skip
    list_filter = ["status", ("category", CategoryFilter), ("producer", ProducerFilter)]
    list_select_related = ["tag", "producer", "decided_by"]
    list_small_relations = dict.fromkeys(CATEGORY_FIELDS, CATEGORY_CODE)  # 22 categories: no joins, no prefetches
    list_defer = (  # the columns shown (and the rows' names, for the checkboxes)
        *defer_all_but(CategoryProposal, (*CATEGORY_FIELDS, *list_select_related, *list_display)),
        *defer_all_but(Tag, ("name", "display_name"), "tag"),
        *defer_all_but(Producer, ("name", "version", "prompt_version"), "producer"),
        *defer_all_but(get_user_model(), (get_user_model().USERNAME_FIELD,), "decided_by"),
    )
    search_fields = ["tag__name"]  # by tag name or alias prefix: LargeListAdmin
    tag_search = "tag"
    raw_id_fields = ["tag", "job"]
    # Decisions go through the actions (which apply the category), never through an edited status.
    readonly_fields = [
        "status",
        "producer",
        "knn_category",
        "llm_category",
        "second_category",
        "decided_by",
        "decided_at",
        "via",
        "created_at",
    ]
    actions = ["accept", "reject"]

    @admin.display(description="kNN / LLM / second")
    def evidence(self, proposal: CategoryProposal) -> str:
        """The votes beside the proposal in one cell (three columns were a fifth of the page's cells)."""
        votes = (proposal.knn_category, proposal.llm_category, proposal.second_category)
        return " / ".join(vote.code if vote else "-" for vote in votes)

    def has_categorize_permission(self, request) -> bool:
        """The page's moderator rule: admin access alone does not decide proposals."""
        return request.user.has_perm("categorization.review_categoryproposal")

    @admin.action(description="Accept the selected proposals (apply their category)", permissions=["categorize"])
    def accept(self, request, queryset):
        count = services.accept_proposals(queryset, request.user, via="admin")
        self.message_user(request, f"{count} proposal(s) accepted.")

    @admin.action(description="Reject the selected proposals", permissions=["categorize"])
    def reject(self, request, queryset):
        count = services.reject_proposals(queryset, request.user, via="admin")
        self.message_user(request, f"{count} proposal(s) rejected.")


class ChatProducerFilter(ValuesFilter):
    """A cached answer's column by the values the chat models' producers (the small table) have in
    `producer_field`, each once."""

    producer_field = ""

    def values(self):
        chat = Producer.objects.filter(kind=Producer.Kind.CHAT).exclude(**{self.producer_field: ""})
        found = chat.order_by(self.producer_field).values_list(self.producer_field, flat=True).distinct()
        return [(value, value) for value in found]


class ChatModelFilter(ChatProducerFilter):
    title = "model"
    parameter_name = "model"
    producer_field = "name"


class PromptVersionFilter(ChatProducerFilter):
    title = "prompt version"
    parameter_name = "prompt_version"
    producer_field = "prompt_version"


@admin.register(CachedAnswer)
class CachedAnswerAdmin(LargeListAdmin):
    list_display = ["tag_name", "category", "confidence", "model", "prompt_version", "created_at"]
    list_filter = [ChatModelFilter, PromptVersionFilter]
    list_select_related = ["category"]
    search_fields = ["tag_name"]

    def get_search_results(self, request, queryset, search_term):
        """By the tag name's prefix (normalised like a tag name): the unique index's first column serves it, where
        a match inside every answer's name read the whole cache."""
        name = normalize_tag_name(search_term)
        return (queryset.filter(tag_name__startswith=name) if name else queryset), False


@admin.register(CategorizerEvaluation)
class CategorizerEvaluationAdmin(admin.ModelAdmin):
    """What `evaluate_categorizer` measured, per producer (model + prompt version): read before trusting one."""

    list_display = ["producer", "accuracy", "macro_recall", "knn_accuracy", "tags", "folds", "requests", "seconds"]
    list_filter = ["producer"]
    list_select_related = ["producer"]
    readonly_fields = [field.name for field in CategorizerEvaluation._meta.fields]
