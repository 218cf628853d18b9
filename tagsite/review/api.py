"""One review API for every kind: `GET /api/review/<kind>/` (filters, keyset pages, no counts) and
`POST /api/review/<kind>/decide/`. The kinds' older endpoints are thin wrappers over the same service."""

from django.db.models import F
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import permissions, serializers
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from tagsite.api import datetime_text
from tagsite.models import Producer, Proposal
from tagsite.review import ReviewKind, UnknownKind, get_kind
from tagsite.review import services as review
from tagsite.services.tags import tag_ids


def kind_or_404(name: str) -> ReviewKind:
    try:
        return get_kind(name)
    except UnknownKind as exc:
        raise Http404(str(exc)) from exc


def can_view(user, kind: ReviewKind) -> bool:
    meta = kind.model._meta
    return user.has_perm(f"{meta.app_label}.view_{meta.model_name}") or user.has_perm(kind.permission)


class CanReview(permissions.BasePermission):
    """The one permission scheme: deciding a kind needs `<app>.review_<kind>` (the moderators group has every
    kind's); reading needs the model's view permission or that one. A view names its kind in `review_kind`
    or takes it from the URL."""

    def has_permission(self, request, view):
        kind = kind_or_404(getattr(view, "review_kind", None) or view.kwargs["kind"])
        deciding = request.method not in permissions.SAFE_METHODS or getattr(view, "action", "") in getattr(
            view, "deciding", ()
        )
        self.message = (
            f"Deciding {kind.label or kind.name} needs the {kind.permission} permission (the moderators group)."
        )
        return request.user.has_perm(kind.permission) if deciding else can_view(request.user, kind)


class ReviewPagination(CursorPagination):
    """Keyset pages (`?cursor=`): as fast on the last page of a million rows as on the first; no count."""

    ordering = "id"
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


class ProducerSerializer(serializers.ModelSerializer):
    class Meta:
        model = Producer
        fields = ["id", "kind", "name", "version", "prompt_version", "endpoint"]
        read_only_fields = fields


class ProposalSerializer(serializers.Serializer):
    """The fields every kind has; what the kind proposes about what is in `subject` (the kind's `describe`). The
    listing's schema; its rows are `proposal_rows`, which tests hold equal to this."""

    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=Proposal.Status.choices)
    confidence = serializers.FloatField()
    producer = serializers.SerializerMethodField()
    job = serializers.IntegerField(source="job_id", allow_null=True)
    created_at = serializers.DateTimeField()
    decided_by = serializers.CharField(source="decided_by.username", read_only=True, allow_null=True)
    decided_at = serializers.DateTimeField(allow_null=True)
    via = serializers.CharField()
    subject = serializers.SerializerMethodField()

    def get_subject(self, proposal) -> dict:
        return self.context["kind"].describe(proposal)

    @extend_schema_field(ProducerSerializer)
    def get_producer(self, proposal) -> dict:
        return ProducerSerializer(proposal.producer).data


def proposal_rows(kind: ReviewKind, proposals: list) -> list[dict]:
    """ProposalSerializer's output, built without DRF's per-field calls (most of a listing's CPU): proposals
    annotated with `decider_username`, their producers read once for the page (tests hold the two equal)."""
    producers = Producer.objects.in_bulk({proposal.producer_id for proposal in proposals}) if proposals else {}
    described = {pk: ProducerSerializer(producer).data for pk, producer in producers.items()}
    when = datetime_text()
    return [
        {
            "id": proposal.pk,
            "status": proposal.status,
            "confidence": proposal.confidence,
            "producer": described[proposal.producer_id],
            "job": proposal.job_id,
            "created_at": when(proposal.created_at),
            "decided_by": proposal.decider_username,
            "decided_at": when(proposal.decided_at),
            "via": proposal.via,
            "subject": kind.describe(proposal),
        }
        for proposal in proposals
    ]


class ReviewQuerySerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Proposal.Status.choices, required=False)
    producer = serializers.IntegerField(min_value=1, required=False)
    min_confidence = serializers.FloatField(min_value=0, max_value=1, required=False)
    max_confidence = serializers.FloatField(min_value=0, max_value=1, required=False)
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)


class DecideSerializer(serializers.Serializer):
    ids = serializers.ListField(child=serializers.IntegerField(min_value=1), allow_empty=False, max_length=5000)
    status = serializers.ChoiceField(
        choices=[Proposal.Status.APPROVED, Proposal.Status.REJECTED, Proposal.Status.PENDING],
        help_text="pending: take a decision back (an approval's effect is undone).",
    )
    via = serializers.ChoiceField(choices=[Proposal.Via.API, Proposal.Via.PAGE], default=Proposal.Via.API)


class DecideResultSerializer(serializers.Serializer):
    changed = serializers.ListField(child=serializers.IntegerField())
    skipped = serializers.ListField(child=serializers.IntegerField(), help_text="Already in that state.")
    missing = serializers.ListField(child=serializers.IntegerField(), help_text="No such proposal.")
    refused = serializers.DictField(
        child=serializers.CharField(), help_text="Not moved now, id -> why (e.g. the tag has another pending one)."
    )


SUBJECT_HELP = "Any of the kind's own foreign keys by id (tagsuggestion: tag, image; categoryproposal: tag, category)"


class ReviewList(APIView):
    permission_classes = [permissions.IsAdminUser, CanReview]

    @extend_schema(
        parameters=[
            ReviewQuerySerializer,
            OpenApiParameter("tag", OpenApiTypes.STR, description="A tag id or name. " + SUBJECT_HELP),
            OpenApiParameter("image", OpenApiTypes.INT, description=SUBJECT_HELP),
            OpenApiParameter("cursor", OpenApiTypes.STR),
            OpenApiParameter("page_size", OpenApiTypes.INT),
        ],
        responses=ProposalSerializer(many=True),
    )
    def get(self, request, kind):
        """A kind's proposals, oldest first, in keyset pages; every filter is resolved to ids before the query."""
        kind = kind_or_404(kind)
        query = ReviewQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        subjects = self.subjects(kind, request.query_params)
        if subjects is None:
            return self.page(kind, kind.model.objects.none())
        try:
            proposals = review.proposals(kind, subjects=subjects, **query.validated_data)
        except ValueError as exc:
            raise serializers.ValidationError({"detail": str(exc)}) from exc
        # the decider's name, not the user row; the page's producers in one query (proposal_rows)
        listed = proposals.select_related(None).select_related(*(kind.related if kind.listed is None else kind.listed))
        return self.page(kind, listed.annotate(decider_username=F("decided_by__username")))

    def page(self, kind: ReviewKind, queryset):
        paginator = ReviewPagination()
        rows = paginator.paginate_queryset(queryset, self.request, view=self)
        return paginator.get_paginated_response(proposal_rows(kind, rows))

    @staticmethod
    def subjects(kind: ReviewKind, params) -> dict[str, int] | None:
        """The kind's foreign-key filters as ids (a tag may be given by name); None when a name matches nothing."""
        found = {}
        for name in kind.subject_fields:
            value = params.get(name, "").strip()
            if not value:
                continue
            if value.isascii() and value.isdigit():
                found[name] = int(value)
            elif name == "tag":
                ids = tag_ids([value])
                if not ids:
                    return None
                found[name] = ids[0]
            else:
                raise serializers.ValidationError({name: ["An id."]})
        return found


class ReviewDecide(APIView):
    permission_classes = [permissions.IsAdminUser, CanReview]

    @extend_schema(request=DecideSerializer, responses=DecideResultSerializer)
    def post(self, request, kind):
        """Decide proposals of a kind: approve (it takes effect), reject, or back to pending (undone)."""
        kind = kind_or_404(kind)
        data = DecideSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        outcome = review.decide(
            kind=kind, ids=data.validated_data["ids"], status=data.validated_data["status"], user=request.user,
            via=data.validated_data["via"],
        )  # fmt: skip
        return Response(outcome.as_json())
