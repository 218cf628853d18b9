"""REST API of categorisation: the 22 categories, tags with their category, LLM proposals and runs.

The same service functions as the /tag_categorize page, under the same permissions: staff with the
page's view permission read; the moderators group (and superusers) decide and start runs.
"""

import django_filters
from django.db.models import Count
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from categorization import services
from categorization.models import CategoryProposal, ExtendedCategory
from categorization.tasks import start_run
from tagsite.api import JobSerializer
from tagsite.models import Tag
from tagsite.review.api import CanReview


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
    category = serializers.SlugRelatedField(slug_field="code", read_only=True)
    model = serializers.CharField(source="producer.name", read_only=True)

    class Meta:
        model = CategoryProposal
        fields = ["id", "category", "confidence", "model"]
        read_only_fields = fields


class TagCategorySerializer(serializers.ModelSerializer):
    category = serializers.CharField(source="category_code", read_only=True, allow_null=True)
    pending_proposal = serializers.SerializerMethodField()

    class Meta:
        model = Tag
        fields = ["id", "name", "display_name", "usage_count", "category", "pending_proposal"]
        read_only_fields = fields

    @extend_schema_field(PendingProposalSerializer(allow_null=True))
    def get_pending_proposal(self, tag) -> dict | None:
        return PendingProposalSerializer(tag.pending[0]).data if tag.pending else None


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


class TagCategoryViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, CategorizationViewSet):
    """Tags with their extended category and pending proposal, most used first, filtered as on the page."""

    serializer_class = TagCategorySerializer
    deciding = frozenset({"set_category"})

    def get_queryset(self):
        params = self.request.query_params
        state = params.get("state", "all")
        if state not in dict(services.STATES):
            raise serializers.ValidationError({"state": [f"One of {', '.join(dict(services.STATES))}."]})
        return services.filter_tags(params.get("q", "").strip(), params.get("category", ""), state)

    @extend_schema(parameters=TAG_PARAMETERS)
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=SetCategorySerializer, responses=CountSerializer)
    @action(detail=False, methods=["post"], url_path="set")
    def set_category(self, request):
        """Categorise tags by hand (null clears); their pending proposals are accepted or rejected to match."""
        serializer = SetCategorySerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        return Response({"count": services.set_category(data["tags"], data["category"], request.user, via="api")})


class CategoryProposalSerializer(serializers.ModelSerializer):
    tag_name = serializers.CharField(source="tag.name", read_only=True)
    category = serializers.SlugRelatedField(slug_field="code", read_only=True)
    model = serializers.CharField(source="producer.name", read_only=True)
    prompt_version = serializers.CharField(source="producer.prompt_version", read_only=True)
    reviewer = serializers.SlugRelatedField(source="decided_by", slug_field="username", read_only=True, allow_null=True)
    reviewed_at = serializers.DateTimeField(source="decided_at", read_only=True, allow_null=True)

    class Meta:
        model = CategoryProposal
        fields = [
            "id", "tag", "tag_name", "category", "confidence", "producer", "model", "prompt_version", "status",
            "reviewer", "reviewed_at", "via", "job", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class ProposalFilter(django_filters.FilterSet):
    category = django_filters.CharFilter(field_name="category__code", help_text="Category code")
    model = django_filters.CharFilter(field_name="producer__name", help_text="The producing model's name")

    class Meta:
        model = CategoryProposal
        fields = ["status", "category", "model", "producer", "tag", "job"]


class ProposalIdsSerializer(serializers.Serializer):
    ids = serializers.ListField(child=serializers.IntegerField(), allow_empty=False, max_length=5000)


class CategoryProposalViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, CategorizationViewSet):
    """LLM proposals, newest first; accept (the tag gets the category) or reject, one or many, through the review
    core (`/api/review/categoryproposal/` is the generic form). Only pending proposals change: the counts say
    how many did."""

    queryset = CategoryProposal.objects.select_related("tag", "category", "producer", "decided_by")
    serializer_class = CategoryProposalSerializer
    filterset_class = ProposalFilter
    deciding = frozenset({"accept", "reject", "accept_many", "reject_many"})
    review_kind = "categoryproposal"

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
