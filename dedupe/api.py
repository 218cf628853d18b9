"""REST API of dedupe: similar tags (`GET /api/tags/{id}/similar/?k=10`) and merge proposals (members, edits,
decisions through the review core, an optional write of the affected files)."""

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from dedupe import services
from dedupe.models import MergeMember, MergeProposal
from tagsite.api import TagSerializer
from tagsite.models import Proposal, Tag
from tagsite.review.api import CanReview, ReviewPagination
from tagsite.review.services import decide
from tagsite.services.writeback import start_write_job

MAX_K = 100


class SimilarSerializer(TagSerializer):
    similarity = serializers.FloatField()

    class Meta(TagSerializer.Meta):
        fields = [*TagSerializer.Meta.fields, "similarity"]


class SimilarTagsView(APIView):
    """The k tags nearest to a tag in the active embedding space (pgvector HNSW, cosine), most similar first."""

    permission_classes = [permissions.IsAdminUser]

    @extend_schema(
        parameters=[OpenApiParameter("k", OpenApiTypes.INT, description=f"1 to {MAX_K}, default 10")],
        responses=SimilarSerializer(many=True),
    )
    def get(self, request, pk: int):
        tag = get_object_or_404(Tag, pk=pk)
        try:
            k = int(request.query_params.get("k", 10))
        except ValueError:
            k = 0
        if not 1 <= k <= MAX_K:
            raise ValidationError({"k": f"a whole number from 1 to {MAX_K}"})
        found = services.similar_tags(tag, k)
        for item in found:
            item.tag.similarity = round(item.similarity, 4)
        return Response(SimilarSerializer([item.tag for item in found], many=True).data)


class DidYouMeanView(APIView):
    """Tags whose names mean what was typed (`?q=`), for an autocomplete that found no name starting with it:
    the typed text is embedded with the local model (about a millisecond) and looked up in the HNSW index."""

    permission_classes = [permissions.IsAdminUser]

    @extend_schema(
        parameters=[OpenApiParameter("q", OpenApiTypes.STR, required=True), OpenApiParameter("k", OpenApiTypes.INT)],
        responses=SimilarSerializer(many=True),
    )
    def get(self, request):
        try:
            k = min(max(int(request.query_params.get("k", 5)), 1), MAX_K)
        except ValueError:
            k = 5
        found = services.similar_to_text(request.query_params.get("q", "")[:255], k)
        for item in found:
            item.tag.similarity = round(item.similarity, 4)
        return Response(SimilarSerializer([item.tag for item in found], many=True).data)


class MemberSerializer(serializers.ModelSerializer):
    class Meta:
        model = MergeMember
        fields = ["tag", "name", "usage_count", "danbooru_category", "similarity", "reason", "included"]
        read_only_fields = fields


class MergeProposalSerializer(serializers.ModelSerializer):
    members = MemberSerializer(many=True, read_only=True)
    producer = serializers.StringRelatedField()
    decided_by = serializers.CharField(source="decided_by.username", read_only=True, allow_null=True)

    class Meta:
        model = MergeProposal
        fields = [
            "id",
            "status",
            "confidence",
            "representative",
            "representative_name",
            "members",
            "excluded",
            "producer",
            "created_at",
            "decided_by",
            "decided_at",
            "via",
        ]
        read_only_fields = fields


class TagChoiceSerializer(serializers.Serializer):
    tag = serializers.IntegerField(help_text="A tag id.")


class MergeDecisionSerializer(serializers.Serializer):
    ids = serializers.ListField(child=serializers.IntegerField(), required=False, max_length=500)
    status = serializers.ChoiceField(choices=[Proposal.Status.APPROVED, Proposal.Status.REJECTED, "pending"])
    write = serializers.BooleanField(
        default=False, help_text="Approved merges: write the affected files now, as a job (only merged names change)."
    )


class MergeProposalViewSet(viewsets.ReadOnlyModelViewSet):
    """Merge proposals, newest first by keyset pages (`?status=pending`). Edits and decisions need
    `dedupe.review_mergeproposal` (the moderators group)."""

    review_kind = "mergeproposal"
    permission_classes = [permissions.IsAdminUser, CanReview]
    serializer_class = MergeProposalSerializer
    pagination_class = ReviewPagination
    deciding = ("representative", "drop", "add", "decide", "decide_many")

    def get_queryset(self):
        proposals = (
            MergeProposal.objects.select_related("producer", "decided_by")
            .defer("undo")  # every image a merge touched: not shown; decisions load it themselves
            .prefetch_related("members")  # in MergeMember's order, most similar first
        )
        if wanted := self.request.query_params.get("status"):
            proposals = proposals.filter(status=wanted)
        return proposals

    def _edit(self, request, edit):
        proposal = self.get_object()
        choice = TagChoiceSerializer(data=request.data)
        choice.is_valid(raise_exception=True)
        try:
            edit(proposal, choice.validated_data["tag"])
        except (services.MergeError, Tag.DoesNotExist) as exc:
            raise ValidationError({"tag": [str(exc)]}) from exc
        return Response(self.get_serializer(self.get_queryset().get(pk=proposal.pk)).data)

    @extend_schema(request=TagChoiceSerializer, responses=MergeProposalSerializer)
    @action(detail=True, methods=["post"])
    def representative(self, request, pk=None):
        """Choose the tag the others become (an included member)."""
        return self._edit(request, services.set_representative)

    @extend_schema(request=TagChoiceSerializer, responses=MergeProposalSerializer)
    @action(detail=True, methods=["post"])
    def drop(self, request, pk=None):
        """Leave a member out; the pair is remembered as must-not-merge."""
        return self._edit(request, lambda proposal, tag: services.drop_member(proposal, tag, request.user))

    @extend_schema(request=TagChoiceSerializer, responses=MergeProposalSerializer)
    @action(detail=True, methods=["post"])
    def add(self, request, pk=None):
        """Add a tag (one of the similar tags left out) to the merge."""
        return self._edit(request, services.add_member)

    @extend_schema(request=MergeDecisionSerializer, operation_id="merge_proposal_decide")
    @action(detail=True, methods=["post"])
    def decide(self, request, pk=None):
        return self._decide(request, [self.get_object().pk])

    @extend_schema(request=MergeDecisionSerializer, operation_id="merge_proposals_decide")
    @action(detail=False, methods=["post"], url_path="decide")
    def decide_many(self, request):
        """Decide several proposals at once (`ids`)."""
        return self._decide(request, request.data.get("ids") or [])

    def _decide(self, request, ids: list[int]):
        body = MergeDecisionSerializer(data={**request.data, "ids": ids})
        body.is_valid(raise_exception=True)
        outcome = decide(
            kind="mergeproposal",
            ids=body.validated_data["ids"],
            status=body.validated_data["status"],
            user=request.user,
            via=Proposal.Via.API,
        )
        answer = {"changed": outcome.changed, "skipped": outcome.skipped, "refused": outcome.refused}
        if body.validated_data["write"] and body.validated_data["status"] == Proposal.Status.APPROVED:
            job = write_merged_files(outcome.changed, request.user)
            answer["write_job"] = job.pk if job else None
        return Response(answer, status=status.HTTP_200_OK)


def write_merged_files(proposal_ids: list[int], user):
    """Queue a write of the images approved merges touched, changing in their files only what the merges changed:
    append mode that first removes the merged-away names (each member's name, display name and aliases), so the
    representative takes their place and every other keyword in the file stays. None when no image was touched."""
    image_ids, names = set(), set()
    for undo in MergeProposal.objects.filter(pk__in=proposal_ids).values_list("undo", flat=True):
        for member in (undo or {}).get("members", ()):
            image_ids.update(image_id for image_id, _source in member["images"])
            names.update([member["name"], member["display_name"], *member["aliases"]])
    if not image_ids:
        return None
    return start_write_job(
        {"ids": sorted(image_ids)},
        {"mode": "append", "remove": sorted(names)},
        user,
        reason=f"approved tag merges {proposal_ids}",
    )
