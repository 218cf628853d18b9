"""REST API of categorisation: the 22 categories, tags with their category, LLM proposals and runs.

The same service functions as the /tag_categorize page, under the same permissions: staff with the
page's view permission read; the moderators group (and superusers) decide and start runs.
"""

import django_filters
from django.db.models import Count, F
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from categorization import services
from categorization.models import CategoryProposal, ExtendedCategory
from categorization.tasks import start_run
from tagsite.api import JobSerializer, datetime_text
from tagsite.models import Producer, Tag
from tagsite.pagination import CappedCursorPagination, TagCursorPagination
from tagsite.review.api import CanReview
from tagsite.services.lists import capped_count


class CanView(permissions.BasePermission):
    """What the page needs to be seen."""

    message = "Viewing categories needs the categorization.view_extendedcategory permission."

    def has_permission(self, request, view):
        return request.user.has_perm("categorization.view_extendedcategory")


class CanCategorize(permissions.BasePermission):
    """What the page needs to change anything: the moderators group, or a superuser."""

    message = "Only moderators may categorise tags or decide on proposals."

    def has_permission(self, request, view):
        return request.user.has_perm("categorization.categorize_tags")


class CategorizationViewSet(viewsets.GenericViewSet):
    """Reading for staff who may see the page; the actions in `deciding` for moderators only."""

    deciding: frozenset[str] = frozenset()

    def get_permissions(self):
        extra = [CanView(), *([CanCategorize()] if self.action in self.deciding else [])]
        return [*super().get_permissions(), *extra]


class ExtendedCategorySerializer(serializers.ModelSerializer):
    group_name = serializers.CharField(source="get_group_display", read_only=True)
    tag_count = serializers.IntegerField(read_only=True, help_text="Tags in this category.")

    class Meta:
        model = ExtendedCategory
        fields = ["code", "name", "description", "group", "group_name", "tag_count"]
        read_only_fields = fields


class CategorizeRunSerializer(serializers.Serializer):
    limit = serializers.IntegerField(
        min_value=1, max_value=1_000_000, default=100, help_text="The most used uncategorised tags to ask about."
    )


class ExtendedCategoryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, CategorizationViewSet):
    """The 22 extended categories (by code) with their tag counts."""

    queryset = ExtendedCategory.objects.annotate(tag_count=Count("tag_links")).order_by("code")
    serializer_class = ExtendedCategorySerializer
    lookup_field = "code"
    lookup_value_regex = r"[^/.\x00]+"  # the default, less NUL: it would reach PostgreSQL and fail there
    pagination_class = None
    deciding = frozenset({"run"})

    @extend_schema(request=CategorizeRunSerializer, responses={202: JobSerializer})
    @action(detail=False, methods=["post"])
    def run(self, request):
        """Start an LLM categorisation run on the `llm` queue, as the page does; follow it at /api/jobs/{id}/."""
        serializer = CategorizeRunSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        job = start_run(serializer.validated_data["limit"], request.user)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class PendingProposalSerializer(serializers.ModelSerializer):
    category = serializers.CharField(source="category_code", read_only=True, help_text="Category code")
    model = serializers.CharField(source="producer.name", read_only=True)

    class Meta:
        model = CategoryProposal
        fields = ["id", "category", "confidence", "model"]
        read_only_fields = fields


class TagCategorySerializer(serializers.ModelSerializer):
    category = serializers.CharField(source="category_code", read_only=True, allow_null=True)
    pending_proposal = PendingProposalSerializer(read_only=True, allow_null=True)

    class Meta:
        model = Tag
        fields = ["id", "name", "display_name", "usage_count", "category", "pending_proposal"]
        read_only_fields = fields


class SetCategorySerializer(serializers.Serializer):
    tags = serializers.ListField(child=serializers.IntegerField(), allow_empty=False, max_length=5000)
    category = serializers.SlugRelatedField(
        slug_field="code",
        queryset=ExtendedCategory.objects.all(),
        allow_null=True,
        help_text="A code, or null to clear.",
    )


class CountSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="How many were changed.")


TAG_PARAMETERS = [
    OpenApiParameter(
        "q", OpenApiTypes.STR, description="Each word begins a word of the name or display name (`hair`: long_hair)"
    ),
    OpenApiParameter("category", OpenApiTypes.STR, description="Category code"),
    OpenApiParameter("state", OpenApiTypes.STR, enum=[code for code, _ in services.STATES], default="all"),
]


def tag_category_rows(tags: list[dict]) -> list[dict]:
    """TagCategorySerializer's output for `services.filter_tags` rows, without DRF's per-field calls (most of the
    list's CPU; tests hold the two equal): the page's pending proposals as plain values in one query, their
    category's code and model's name read beside them (no proposal and producer objects)."""
    pending = services.pending_proposals(tags).values_list(
        "tag_id", "id", "category_code", "confidence", "producer__name"
    )
    by_tag = {  # oldest first: of rows from before the one-pending constraint the newest wins
        tag_id: {"id": pk, "category": code, "confidence": confidence, "model": model}
        for tag_id, pk, code, confidence, model in pending
    }
    return [
        {
            "id": tag["id"],
            "name": tag["name"],
            "display_name": tag["display_name"],
            "usage_count": tag["usage_count"],
            "category": tag["category_code"],
            "pending_proposal": by_tag.get(tag["id"]),
        }
        for tag in tags
    ]


class TagCategoryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, CategorizationViewSet):
    """Tags with their extended category and pending proposal, most used first, filtered as on the page."""

    serializer_class = TagCategorySerializer
    pagination_class = TagCursorPagination  # most used first, `?cursor=` names a tag
    deciding = frozenset({"set_category"})

    def get_queryset(self):
        params = self.request.query_params
        state = params.get("state", "all")
        if state not in dict(services.STATES):
            raise serializers.ValidationError({"state": [f"One of {', '.join(dict(services.STATES))}."]})
        return services.filter_tags(params.get("q", "").strip(), params.get("category", ""), state)

    def get_object(self):
        return services.with_pending([super().get_object()])[0]

    @extend_schema(parameters=TAG_PARAMETERS)
    def list(self, request, *args, **kwargs):
        tags = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(tag_category_rows(tags))

    @extend_schema(request=SetCategorySerializer, responses=CountSerializer)
    @action(detail=False, methods=["post"], url_path="set")
    def set_category(self, request):
        """Categorise tags by hand (null clears); their pending proposals are accepted or rejected to match."""
        serializer = SetCategorySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        return Response({"count": services.set_category(data["tags"], data["category"], request.user, via="api")})


class CategoryProposalSerializer(serializers.ModelSerializer):
    """The related rows' names come from the viewset's annotations: no tag, category, producer and user objects
    built for each proposal of a page."""

    tag_name = serializers.CharField(read_only=True)
    category = serializers.CharField(source="category_code", read_only=True, help_text="Category code")
    model = serializers.CharField(source="model_name", read_only=True)
    prompt_version = serializers.CharField(read_only=True)
    reviewer = serializers.CharField(source="reviewer_name", read_only=True, allow_null=True)
    reviewed_at = serializers.DateTimeField(source="decided_at", read_only=True, allow_null=True)

    class Meta:
        model = CategoryProposal
        fields = [
            "id", "tag", "tag_name", "category", "confidence", "producer", "model", "prompt_version", "status",
            "reviewer", "reviewed_at", "via", "job", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class ProposalFilter(django_filters.FilterSet):
    """Names are looked up in their small tables first: the proposals are filtered by ids, not through a join."""

    category = django_filters.CharFilter(method="by_category", help_text="Category code")
    model = django_filters.CharFilter(method="by_model", help_text="The producing model's name")

    def by_category(self, queryset, name, value):
        found = ExtendedCategory.objects.filter(code=value).values_list("pk", flat=True).first()
        return queryset.filter(category_id=found) if found else queryset.none()

    def by_model(self, queryset, name, value):
        return queryset.filter(producer_id__in=list(Producer.objects.filter(name=value).values_list("pk", flat=True)))

    class Meta:
        model = CategoryProposal
        fields = ["status", "category", "model", "producer", "tag", "job"]


class ProposalIdsSerializer(serializers.Serializer):
    ids = serializers.ListField(child=serializers.IntegerField(), allow_empty=False, max_length=5000)


# The related rows' names a proposal is shown with, annotated: no tag, category, producer and user objects.
PROPOSAL_NAMES = {
    "tag_name": F("tag__name"),
    "category_code": F("category__code"),
    "model_name": F("producer__name"),
    "prompt_version": F("producer__prompt_version"),
    "reviewer_name": F("decided_by__username"),
}
PROPOSAL_COLUMNS = (
    "id", "tag_id", "confidence", "producer_id", "status", "decided_at", "via", "job_id", "created_at",
)  # fmt: skip


class ProposalPagination(CappedCursorPagination):
    """The list's filters counted on the proposals alone (an index scan, not a join of four tables per row up to
    the cap); the page read as values with the names of its related rows (`proposal_rows` writes them)."""

    def paginate_queryset(self, queryset, request, view=None):
        self.count, self.count_capped = capped_count(queryset)
        rows = queryset.values(*PROPOSAL_COLUMNS, **PROPOSAL_NAMES)
        return CursorPagination.paginate_queryset(self, rows, request, view)


def proposal_rows(proposals: list[dict]) -> list[dict]:
    """CategoryProposalSerializer's output for `ProposalPagination`'s rows, without DRF's per-field calls (most of
    the list's CPU; tests hold the two equal)."""
    when = datetime_text()
    return [
        {
            "id": row["id"],
            "tag": row["tag_id"],
            "tag_name": row["tag_name"],
            "category": row["category_code"],
            "confidence": row["confidence"],
            "producer": row["producer_id"],
            "model": row["model_name"],
            "prompt_version": row["prompt_version"],
            "status": row["status"],
            "reviewer": row["reviewer_name"],
            "reviewed_at": when(row["decided_at"]),
            "via": row["via"],
            "job": row["job_id"],
            "created_at": when(row["created_at"]),
        }
        for row in proposals
    ]


class CategoryProposalViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, CategorizationViewSet):
    """LLM proposals, newest first; accept (the tag gets the category) or reject, one or many, through the review
    core (`/api/review/categoryproposal/` is the generic form). Only pending proposals change: the counts say
    how many did."""

    queryset = CategoryProposal.objects.annotate(**PROPOSAL_NAMES)
    serializer_class = CategoryProposalSerializer
    pagination_class = ProposalPagination  # newest first by id, never OFFSET
    filterset_class = ProposalFilter
    deciding = frozenset({"accept", "reject", "accept_many", "reject_many"})
    review_kind = "categoryproposal"

    def get_queryset(self):
        """The list filters the bare proposals (`ProposalPagination` counts them, then reads the page's names)."""
        return CategoryProposal.objects.all() if self.action == "list" else super().get_queryset()

    def list(self, request, *args, **kwargs):
        proposals = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(proposal_rows(proposals))

    def get_permissions(self):
        """Deciding needs the kind's review permission, like every review kind."""
        extra = [CanReview()] if self.action in self.deciding else []
        return [*viewsets.GenericViewSet.get_permissions(self), CanView(), *extra]

    @extend_schema(request=None, responses={200: CategoryProposalSerializer, 409: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"])
    def accept(self, request, pk=None):
        return self._decide_one(services.accept_proposals)

    @extend_schema(request=None, responses={200: CategoryProposalSerializer, 409: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        return self._decide_one(services.reject_proposals)

    @extend_schema(
        request=ProposalIdsSerializer, responses=CountSerializer, operation_id="category_proposals_accept_many"
    )
    @action(detail=False, methods=["post"], url_path="accept")
    def accept_many(self, request):
        return self._decide_many(services.accept_proposals)

    @extend_schema(
        request=ProposalIdsSerializer, responses=CountSerializer, operation_id="category_proposals_reject_many"
    )
    @action(detail=False, methods=["post"], url_path="reject")
    def reject_many(self, request):
        return self._decide_many(services.reject_proposals)

    def _decide_one(self, decide):
        """409 rather than a silent no-op when the proposal was already decided."""
        proposal = self.get_object()
        if not decide(CategoryProposal.objects.filter(pk=proposal.pk), self.request.user, via="api"):
            return Response({"detail": f"Proposal is already {proposal.status}."}, status=status.HTTP_409_CONFLICT)
        return Response(self.get_serializer(self.get_object()).data)

    def _decide_many(self, decide):
        serializer = ProposalIdsSerializer(data=self.request.data)
        serializer.is_valid(raise_exception=True)
        chosen = CategoryProposal.objects.filter(pk__in=serializer.validated_data["ids"])
        return Response({"count": decide(chosen, self.request.user, via="api")})
