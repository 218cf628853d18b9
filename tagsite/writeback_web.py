"""Metadata write-back on the web: the API (start a write job; one image's file against tagsite) and the page
endpoint behind the image page's "write to file", the library's selection and the review hub's "write approved now".
Thin callers of tagsite.services.writeback; writing needs `tagsite.write_metadata`."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_POST
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import api_view, permission_classes
from rest_framework.response import Response

from tagsite.access import require
from tagsite.api import requires
from tagsite.models import Image
from tagsite.services import writeback


class WriteRequestSerializer(serializers.Serializer):
    ids = serializers.ListField(child=serializers.IntegerField(), required=False, default=list, max_length=100_000)
    query = serializers.CharField(required=False, default="", allow_blank=True)
    folder = serializers.CharField(required=False, default="", allow_blank=True)
    all_dirty = serializers.BooleanField(required=False, default=False)
    mode = serializers.ChoiceField([writeback.REPLACE, writeback.APPEND], default=writeback.REPLACE)
    sidecar_only = serializers.BooleanField(default=False)
    backup = serializers.BooleanField(default=False)
    overwrite = serializers.BooleanField(default=False)
    dry_run = serializers.BooleanField(default=False)


def job_answer(job) -> dict:
    return {"job": job.pk, "status": job.status, "url": reverse("job-detail", args=[job.pk])}


@extend_schema(request=WriteRequestSerializer, responses={202: dict})
@api_view(["POST"])
@permission_classes([requires("tagsite.write_metadata")])
def write_metadata(request):
    """Queue one job that writes the selected images' files (ids, a search, a folder, all dirty; several add up)."""
    data = WriteRequestSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    values = data.validated_data
    selection = {key: values[key] for key in ("ids", "query", "folder", "all_dirty")}
    options = {key: values[key] for key in ("mode", "sidecar_only", "backup", "overwrite", "dry_run")}
    try:
        job = writeback.start_write_job(selection, options, request.user)
    except ValueError as exc:
        return Response({"detail": str(exc)}, status=status.HTTP_400_BAD_REQUEST)
    return Response(job_answer(job), status=status.HTTP_202_ACCEPTED)


WOULD = {"dry-run": "write", "unchanged": "nothing (the file already matches)"}


def comparison(image: Image, mode: str = writeback.REPLACE) -> dict:
    """The image's file against tagsite, field by field, and what a write would do."""
    result = writeback.preview(image, mode)
    fields = [
        {"field": name, "file": result.before.get(name, []), "tagsite": after, "changes": name in result.diff()}
        for name, after in result.after.items()
    ]
    return {
        "image": image.pk,
        "path": image.path,
        "target": result.target,
        "sidecar": result.sidecar,
        "mode": mode,
        "would": WOULD.get(result.status, result.status),
        "error": result.error,
        "notes": result.notes,
        "dirty": bool(writeback.dirty_ids([image])),
        "written_at": image.metadata_written_at,
        "fields": fields,
    }


@extend_schema(responses={200: dict})
@api_view(["GET"])
def image_metadata(request, pk: int):
    """File vs tagsite per field for one image (`?mode=append` to see a merge), read from the file now."""
    mode = request.GET.get("mode", writeback.REPLACE)
    if mode not in (writeback.REPLACE, writeback.APPEND):
        return Response({"detail": "mode is replace or append"}, status=status.HTTP_400_BAD_REQUEST)
    return Response(comparison(get_object_or_404(Image, pk=pk), mode))


@require_POST
def write_page(request):
    """The pages' write button: the posted image ids (or all dirty images), then the job's page."""
    require(request.user, "tagsite.write_metadata")
    ids = [int(pk) for pk in request.POST.getlist("ids") if pk.isdigit()]
    mode = request.POST.get("mode", writeback.REPLACE)
    try:
        selection = {"ids": ids, "all_dirty": "all_dirty" in request.POST}
        job = writeback.start_write_job(selection, {"mode": mode}, request.user)
    except ValueError as exc:
        messages.error(request, str(exc))
        return redirect(request.META.get("HTTP_REFERER") or "library")
    return redirect("job-detail", job.pk)
