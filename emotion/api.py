"""The emotion API: seed 004's CSV for download, relabelling (optionally approving) faces, and starting runs.
Listing and deciding proposals is the review core's `/api/review/emotion/`."""

import csv

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from emotion import services
from emotion.models import EmotionLabel
from emotion.tasks import start_run
from tagsite.api import JobSerializer
from tagsite.review.api import CanReview
from tagsite.review.services import decide


class Echo:
    """A file for csv.writer that hands each written line back, to stream it."""

    def write(self, line: str) -> str:
        return line


def csv_response(only_approved: bool) -> StreamingHttpResponse:
    """Streamed as the rows are read: 100k images' rows are never held at once."""
    writer = csv.writer(Echo())
    rows = (writer.writerow(row) for row in services.csv_rows(services.image_labels(only_approved)))
    response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="llm_labels.csv"'
    return response


class EmotionView(APIView):
    """Reading needs the kind's view (or review) permission, changing needs `emotion.review_emotion`."""

    permission_classes = [permissions.IsAdminUser, CanReview]
    review_kind = services.KIND


class ExportCSV(EmotionView):
    @extend_schema(
        parameters=[OpenApiParameter("all", OpenApiTypes.BOOL, description="Pending labels too (default: approved)")],
        responses={(200, "text/csv"): OpenApiTypes.STR},
    )
    def get(self, request):
        """Seed 004's CSV `filename,path,emotion,confidence`: one row per image, its largest face's."""
        return csv_response(only_approved=request.query_params.get("all", "") not in ("1", "true", "yes"))


class RelabelSerializer(serializers.Serializer):
    ids = serializers.ListField(child=serializers.IntegerField(min_value=1), allow_empty=False, max_length=5000)
    label = serializers.SlugRelatedField(slug_field="name", queryset=EmotionLabel.objects.all())
    approve = serializers.BooleanField(default=False, help_text="Approve them with the new label at once.")
    via = serializers.ChoiceField(choices=["api", "page"], default="api")


class Relabel(EmotionView):
    @extend_schema(request=RelabelSerializer, responses=OpenApiTypes.OBJECT)
    def post(self, request):
        """Change the label of pending proposals (what the model said is kept), and approve them if asked."""
        data = RelabelSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        ids, label = data.validated_data["ids"], data.validated_data["label"]
        changed = services.relabel(ids, label.name)
        answer = {"relabelled": changed, "label": label.name}
        if data.validated_data["approve"]:
            outcome = decide(
                kind=services.KIND, ids=ids, status="approved", user=request.user, via=data.validated_data["via"]
            )
            answer |= {"changed": outcome.changed, "skipped": outcome.skipped, "missing": outcome.missing}
        return Response(answer)


class RunSerializer(serializers.Serializer):
    backend = serializers.ChoiceField(choices=services.BACKENDS, required=False)
    limit = serializers.IntegerField(min_value=1, required=False)
    image_ids = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, max_length=10000)
    chat_input = serializers.ChoiceField(
        choices=services.CHAT_INPUTS,
        required=False,
        help_text="llm: each detected face's crop (faces) or the whole image (image); default the setting",
    )


class Run(EmotionView):
    @extend_schema(request=RunSerializer, responses={202: JobSerializer})
    def post(self, request):
        """Queue a labelling run over library images (the local backend on the `gpu` queue, llm on `llm`)."""
        data = RunSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = start_run(**data.validated_data, user=request.user)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)
