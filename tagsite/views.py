"""Pages of the library. Every view here sits behind StaffRequiredMiddleware."""

import os
import stat
from html import escape
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.contrib import messages
from django.db.models import Prefetch
from django.http import FileResponse, Http404, HttpResponseNotModified
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from tagsite.access import require
from tagsite.links import object_url
from tagsite.models import Image, ImageTag, Job
from tagsite.review.services import pending_about_image
from tagsite.services.ingest import ImportRefused, check_import_folder
from tagsite.services.jobs import request_cancel, start_job
from tagsite.services.lists import count_label, keyset_page, page_key, search_count, tag_names_by_image
from tagsite.services.tags import SearchError, parse_query, search_images, search_text
from tagsite.services.writeback import audit_folder
from tagsite.writeback_web import comparison


def library(request):
    """Search images by tags: `blue_eyes -hat ~cat ~dog` (all of, none of, any of)."""
    query = request.GET.get("q", "").strip()
    text = request.GET.get("text", "").strip()  # full text of the approved titles, captions, descriptions
    status = request.GET.get("status", "ok")
    all_of, none_of, any_of = parse_query(query)
    try:
        images = search_text(search_images(all_of, none_of, any_of, status=status or None), text)
        search_error = ""
    except SearchError as exc:
        images, search_error = Image.objects.none(), str(exc)
    images = images.only("path", "sha256", "thumbnail", "status", "error")
    after, before = page_key(request.GET.get("after")), page_key(request.GET.get("before"))
    page = keyset_page(images, 48, after=after, before=before)  # by id, never OFFSET
    tile_tags = tag_names_by_image([image.pk for image in page], per_image=8)  # one query
    for image in page:
        image.link = object_url("image-detail", image.pk)
        # a tile's links joined here: 8 links on each of 48 tiles were a third of the page's template nodes (and
        # format_html costs 4 us a link); quote() leaves no character HTML gives a meaning, the display is escaped
        links = (
            f'<a class="tag" href="?q={quote(name)}">{escape(display)}</a>' for name, display in tile_tags[image.pk]
        )
        image.tile_tags = mark_safe("".join(links))  # noqa: S308 - every part is quoted or escaped above
    count, capped = search_count(images, request)
    return render(
        request,
        "tagsite/library.html",
        {
            "page": page,
            "count": count_label(count, capped),
            "count_number": count,
            "query": query,
            "text": text,
            "status": status,
            "statuses": Image.Status.choices,
            "search_error": search_error,
            "can_tag": request.user.has_perm("tagsite.add_imagetag")
            or request.user.has_perm("tagsite.delete_imagetag"),
        },
        status=400 if search_error else 200,
    )


def image_detail(request, pk: int):
    links = ImageTag.objects.select_related("tag", "added_by")  # each tag's title names who added it
    image = get_object_or_404(Image.objects.prefetch_related(Prefetch("image_tags", links), "stages"), pk=pk)
    metadata = comparison(image) if image.status == Image.Status.OK else None  # the file against tagsite
    proposals = pending_about_image(image.pk, request.user)
    return render(request, "tagsite/image_detail.html", {"image": image, "metadata": metadata, "proposals": proposals})


def upload(request):
    return render(request, "tagsite/upload.html", upload_context())


def upload_context(**extra) -> dict:
    return {"max_bytes": settings.MAX_UPLOAD_BYTES, "import_roots": settings.IMPORT_ROOTS, **extra}


@require_POST
def import_server_folder(request):
    """Queue a server folder's import from the upload page: the API's check (inside TAGSITE_IMPORT_ROOTS, an
    absolute path of a folder), refused with a 400 and the reason on the same page, never queued to fail later."""
    from tagsite.tasks import import_folder_task

    require(request.user, "tagsite.add_image")
    raw = request.POST.get("path", "").strip()
    try:
        path = check_import_folder(raw, settings.IMPORT_ROOTS)
    except ImportRefused as exc:
        context = upload_context(import_error=str(exc), import_path=raw)
        return render(request, "tagsite/upload.html", context, status=400)
    job = start_job("import_images", import_folder_task, {"path": path, "roots": settings.IMPORT_ROOTS}, request.user)
    return redirect("job-detail", job.pk)


def jobs(request):
    """Jobs, newest first, 50 a page with links by id (never OFFSET), as plain rows (a template reads a dict key
    at once, a model attribute after a failed lookup); parameters and errors are on each job's page."""
    fields = ("id", "kind", "status", "total", "current", "message", "error_count", "started_at")
    after, before = page_key(request.GET.get("after")), page_key(request.GET.get("before"))
    page = keyset_page(Job.objects.only(*fields), 50, after=after, before=before)
    jobs = [{**{name: getattr(job, name) for name in fields}, "link": object_url("job-detail", job.pk)} for job in page]
    # only the newest page follows the API's first page live; an older one stays as it is
    return render(request, "tagsite/jobs.html", {"jobs": jobs, "page": page, "live": after is None and before is None})


def job_detail(request, pk: int):
    """One job: parameters, progress, timings, errors with what they are about, advice, and a cancel button."""
    job = get_object_or_404(Job.objects.select_related("created_by", "cancelled_by"), pk=pk)
    can_cancel = not job.finished and request.user.has_perm("tagsite.cancel_job")
    context = {"job": job, "can_cancel": can_cancel, "timings": job_timings(job), "params": job_params(job.params)}
    context["audit_files"] = [name for name in AUDIT_FILES if (audit_folder(job.pk) / name).is_file()]
    return render(request, "tagsite/job_detail.html", context)


PARAM_ITEMS = 20


def job_params(params: dict) -> list[tuple[str, object]]:
    """A job's parameters to show: a long list (a write or merge job's image ids, up to 100k) as its first
    PARAM_ITEMS items and how many there are in all, not a page of numbers."""
    shown = []
    for key, value in params.items():
        if isinstance(value, list) and len(value) > PARAM_ITEMS:
            value = f"{', '.join(map(str, value[:PARAM_ITEMS]))}, … ({len(value):,} in all)"
        shown.append((key, value))
    return shown


AUDIT_FILES = {"audit.jsonl": "application/x-ndjson", "summary.md": "text/markdown; charset=utf-8"}


def job_audit(request, pk: int, name: str):
    """A run's audit (a metadata write's or a describe run's): JSONL records or the Markdown summary, as a download."""
    path = audit_folder(get_object_or_404(Job, pk=pk).pk) / name
    if name not in AUDIT_FILES or not path.is_file():
        raise Http404("This job has no such audit file.")
    response = FileResponse(path.open("rb"), as_attachment=True, filename=f"job-{pk}-{name}")
    response["Content-Type"] = AUDIT_FILES[name]
    return response


def job_timings(job: Job) -> list[tuple[str, str]]:
    local = lambda moment: timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S")  # noqa: E731
    rows = [("Created", local(job.created_at) + (f" by {job.created_by}" if job.created_by else ""))]
    if job.started_at:
        rows += [("Waited", seconds(job.started_at - job.created_at)), ("Started", local(job.started_at))]
    if job.finished_at:
        rows += [("Finished", local(job.finished_at))]
        if job.started_at:
            took = (job.finished_at - job.started_at).total_seconds()
            rate = f" ({job.current / took:.1f} items/s)" if took and job.current else ""
            rows += [("Took", seconds(job.finished_at - job.started_at) + rate)]
    elif job.started_at:
        rows += [("Running for", seconds(timezone.now() - job.started_at))]
    return rows


def seconds(span) -> str:
    total = span.total_seconds()
    if total < 60:
        return f"{total:.1f} s"
    minutes, secs = divmod(round(total), 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"{minutes} min {secs} s"


@require_POST
def job_cancel(request, pk: int):
    require(request.user, "tagsite.cancel_job")
    job = get_object_or_404(Job, pk=pk)
    if request_cancel(job, request.user):
        messages.info(request, f"Job #{job.pk} is cancelled; a running job stops at its next item.")
    else:
        messages.warning(request, f"Job #{job.pk} had already ended.")
    return redirect("job-detail", pk=job.pk)


def image_thumbnail(request, pk: int):
    """A thumbnail, sent with sendfile by gunicorn. Thumbnails are named by content hash, so a link that
    carries the hash (`?v=`, as the pages write it) is cached by the browser for a year and never asked again;
    without it, a day, and a repeat answers 304 from the ETag without opening the file."""
    image = get_object_or_404(Image.objects.only("thumbnail", "sha256"), pk=pk)
    if not image.thumbnail:
        raise Http404("no thumbnail")
    etag = f'"{image.sha256}"'
    if request.headers.get("If-None-Match") == etag:
        return HttpResponseNotModified(headers={"ETag": etag})
    path = Path(settings.MEDIA_ROOT) / image.thumbnail
    if not path.is_file():
        raise Http404("no thumbnail")
    response = FileResponse(path.open("rb"), content_type="image/jpeg")
    response["ETag"] = etag
    versioned = request.GET.get("v") == image.sha256[:16]
    response["Cache-Control"] = "private, max-age=31536000, immutable" if versioned else "private, max-age=86400"
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
