"""Pages of the library. Every view here sits behind StaffRequiredMiddleware."""

import os
import stat
from pathlib import Path

from django.conf import settings
from django.core.paginator import Paginator
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, render

from tagsite.models import Image, Job
from tagsite.services.tags import parse_query, search_images


def library(request):
    """Search images by tags: `blue_eyes -hat ~cat ~dog` (all of, none of, any of)."""
    query = request.GET.get("q", "").strip()
    status = request.GET.get("status", "ok")
    all_of, none_of, any_of = parse_query(query)
    images = search_images(all_of, none_of, any_of, status=status or None).prefetch_related("image_tags__tag")
    page = Paginator(images, 48).get_page(request.GET.get("page"))
    return render(
        request,
        "tagsite/library.html",
        {"page": page, "query": query, "status": status, "statuses": Image.Status.choices},
    )


def image_detail(request, pk: int):
    image = get_object_or_404(Image.objects.prefetch_related("image_tags__tag", "stages"), pk=pk)
    return render(request, "tagsite/image_detail.html", {"image": image})


def upload(request):
    return render(request, "tagsite/upload.html", {"max_bytes": settings.MAX_UPLOAD_BYTES})


def jobs(request):
    return render(request, "tagsite/jobs.html", {"jobs": Job.objects.all()[:50]})


def image_thumbnail(request, pk: int):
    image = get_object_or_404(Image, pk=pk)
    path = Path(settings.MEDIA_ROOT) / image.thumbnail
    if not image.thumbnail or not path.is_file():
        raise Http404("no thumbnail")
    response = FileResponse(path.open("rb"), content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=86400"
    return response


def image_file(request, pk: int):
    """The original file, only while it is the file that was imported (same size and mtime)."""
    image = get_object_or_404(Image, pk=pk, status__in=[Image.Status.OK, Image.Status.DUPLICATE])
    try:
        handle = open(image.path, "rb")  # noqa: SIM115 - FileResponse closes it
    except OSError as exc:
        raise Http404(f"file not readable: {exc.strerror}") from exc
    info = os.fstat(handle.fileno())
    if not stat.S_ISREG(info.st_mode) or (info.st_size, info.st_mtime) != (image.size, image.mtime):
        handle.close()
        raise Http404("the file changed since it was imported; rescan its folder")
    return FileResponse(handle, filename=image.filename)
