"""REST API of the library: images, tags, aliases, implications and jobs (staff only)."""

import functools
from collections.abc import Callable
from datetime import UTC, datetime

import django_filters
from django.conf import settings
from django.contrib.postgres.expressions import ArraySubquery
from django.db.models import CharField, F, Func, OuterRef, Prefetch, QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import ISO_8601, mixins, parsers, permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.settings import api_settings

from tagsite.links import object_url, url_template
from tagsite.models import Image, ImageTag, Job, Tag, TagAlias, TagImplication
from tagsite.pagination import CappedCursorPagination, SearchCursorPagination, TagCursorPagination
from tagsite.services import tags as tag_service
from tagsite.services.ingest import ImportRefused, UploadRejected, check_import_folder, store_upload
from tagsite.services.jobs import request_cancel, start_job


def datetime_text() -> Callable[[datetime | None], str | None]:
    """DRF's DateTimeField output (ISO 8601 in the current time zone, UTC as `Z`), the zone looked up once for a
    list's rows rather than per value: lists that build plain rows from `values()` use it."""
    if not iso_output():
        return serializers.DateTimeField().to_representation
    zone = timezone.get_current_timezone()

    def text(value: datetime | None) -> str | None:
        if not value:
            return None
        value = value.astimezone(zone).isoformat()
        return value[:-6] + "Z" if value.endswith("+00:00") else value

    return text


class UtcText(Func):
    """A date as DRF writes it in UTC (`2024-05-01T10:00:00.123456`, before `utc_text` trims a zero fraction and
    adds the `Z`), formatted by the database: a list's dates are not parsed into datetimes (Django's loader is
    Python, per value) only to be written back as text."""

    template = "to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"
    output_field = CharField()


def utc_text(value: str | None) -> str | None:
    """`UtcText`'s value as DRF's DateTimeField writes it in UTC: no fraction when it is zero, `Z` for the zone."""
    if value is None:
        return None
    return (value[:-7] if value.endswith(".000000") else value) + "Z"


def dates_as_utc_text() -> bool:
    """Whether a list's dates can come formatted by the database (`UtcText`): DRF writes them in ISO 8601 and the
    current time zone is UTC; otherwise `datetime_text` formats datetimes."""
    zone = timezone.get_current_timezone()
    return iso_output() and (zone is UTC or getattr(zone, "key", None) == "UTC")


def iso_output() -> bool:
    """Whether DRF writes dates as ISO 8601 in the current time zone (its default), which the row builders copy."""
    output = api_settings.DATETIME_FORMAT
    return settings.USE_TZ and isinstance(output, str) and output.lower() == ISO_8601


class StaffModelPermissions(permissions.DjangoModelPermissions):
    """Staff read; a write needs the model permission admin would ask for (add, change, delete)."""

    perms_map = {**permissions.DjangoModelPermissions.perms_map, "GET": [], "HEAD": [], "OPTIONS": []}

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_staff) and super().has_permission(request, view)


def requires(*perms: str) -> type[permissions.BasePermission]:
    """Staff with these permissions, for actions that are not plain model writes."""

    class Required(permissions.IsAdminUser):
        def has_permission(self, request, view):
            return super().has_permission(request, view) and request.user.has_perms(perms)

    return Required


class TagSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tag
        fields = ["id", "name", "display_name", "danbooru_category", "usage_count"]
        read_only_fields = ["name", "usage_count"]

    def create(self, validated_data):
        tag = tag_service.get_or_create_tags([validated_data["display_name"]])[validated_data["display_name"]]
        if "danbooru_category" in validated_data:
            tag.danbooru_category = validated_data["danbooru_category"]
            tag.save(update_fields=["danbooru_category"])
        return tag


class ImageSerializer(serializers.ModelSerializer):
    tags = serializers.SerializerMethodField()
    thumbnail_url = serializers.SerializerMethodField()
    file_url = serializers.SerializerMethodField()

    class Meta:
        model = Image
        fields = [
            "id", "path", "sha256", "size", "format", "width", "height", "orientation", "frames",
            "status", "error", "tags", "thumbnail_url", "file_url", "created_at", "updated_at",
            "title", "caption", "description",
        ]  # fmt: skip
        read_only_fields = fields

    def get_tags(self, image) -> list[str]:
        return [link.tag.name for link in image.image_tags.all()]

    def get_thumbnail_url(self, image) -> str | None:
        return image.thumbnail_url or None

    def get_file_url(self, image) -> str:
        return object_url("image-file", image.pk)


# The columns ImageSerializer shows (and the thumbnail, which its link needs): a list reads no others (sidecars
# and metadata bookkeeping, JSON decoded per row).
IMAGE_LIST_FIELDS = (
    "id", "path", "sha256", "size", "format", "width", "height", "orientation", "frames", "status", "error",
    "thumbnail", "created_at", "updated_at", "title", "caption", "description",
)  # fmt: skip


def image_rows(images: list[dict]) -> list[dict]:
    """ImageSerializer's output for a list page, without DRF's per-field calls (most of the list's CPU; tests hold
    the two equal). `images` are `values()` rows of IMAGE_LIST_FIELDS (no model objects) with their tag names in
    `tag_names` (`image_tag_names`), and their dates formatted by the database where they can be
    (`created_text` and `updated_text`, `image_list_values`). The links are reversed once for the page, not looked
    up per row."""
    if images and "created_text" in images[0]:
        when, created, updated = utc_text, "created_text", "updated_text"
    else:
        when, created, updated = datetime_text(), "created_at", "updated_at"
    file_url, thumbnail_url = url_template("image-file"), url_template("image-thumbnail")
    return [
        {
            "id": (pk := image["id"]),
            "path": image["path"],
            "sha256": image["sha256"],
            "size": image["size"],
            "format": image["format"],
            "width": image["width"],
            "height": image["height"],
            "orientation": image["orientation"],
            "frames": image["frames"],
            "status": image["status"],
            "error": image["error"],
            "tags": image["tag_names"],
            # Image.thumbnail_url
            "thumbnail_url": f"{thumbnail_url.format(pk)}?v={image['sha256'][:16]}" if image["thumbnail"] else None,
            "file_url": file_url.format(pk),
            "created_at": when(image[created]),
            "updated_at": when(image[updated]),
            "title": image["title"],
            "caption": image["caption"],
            "description": image["description"],
        }
        for image in images
    ]


def image_list_values(images: QuerySet[Image]) -> QuerySet:
    """The rows `image_rows` reads: values (no model objects), each with its tag names (no query of their own)
    and, in UTC, its dates as text."""
    if not dates_as_utc_text():
        return images.values(*IMAGE_LIST_FIELDS, tag_names=image_tag_names())
    fields = [field for field in IMAGE_LIST_FIELDS if field not in ("created_at", "updated_at")]
    dates = {"created_text": UtcText("created_at"), "updated_text": UtcText("updated_at")}
    return images.values(*fields, **dates, tag_names=image_tag_names())


@functools.cache
def image_tag_names() -> ArraySubquery:
    """An image's tag names in the order they were added, read with its row: the page's query brings them,
    not a query of their own (`tag_names` of `image_rows`). Built once: a query resolves a copy of it."""
    links = ImageTag.objects.filter(image_id=OuterRef("pk")).order_by("pk").values("tag__name")
    return ArraySubquery(links)


class TagNamesSerializer(serializers.Serializer):
    tags = serializers.ListField(child=serializers.CharField(max_length=255), allow_empty=False)


class BulkTagSerializer(serializers.Serializer):
    images = serializers.ListField(child=serializers.IntegerField(min_value=1), allow_empty=False, max_length=1000)
    tags = serializers.ListField(child=serializers.CharField(max_length=255), allow_empty=False, max_length=100)


class UploadSerializer(serializers.Serializer):
    file = serializers.FileField()


class ImageFilter(django_filters.FilterSet):
    """`file_format`, not `format`: DRF reads `?format=` as the response format (and answers 404 to `JPEG`)."""

    file_format = django_filters.CharFilter(
        field_name="format", lookup_expr="iexact", help_text="JPEG, PNG, GIF, WEBP, TIFF, BMP, ..."
    )

    class Meta:
        model = Image
        fields = ["status", "file_format"]


class ImageViewSet(viewsets.ReadOnlyModelViewSet):
    """Images. Search with `tags` (all of), `exclude` (none of), `any` (any of): comma-separated names,
    or `q` in the library's syntax (`blue_eyes -hat ~cat ~dog`); at most TAGSITE_SEARCH_MAX_TERMS terms in all."""

    serializer_class = ImageSerializer
    filterset_class = ImageFilter
    pagination_class = SearchCursorPagination

    def get_queryset(self):
        params = self.request.query_params
        split = lambda key: [name for name in params.get(key, "").split(",") if name.strip()]  # noqa: E731
        all_of, none_of, any_of = tag_service.parse_query(params.get("q", ""))
        status_filter = params.get("status", "ok") or None
        try:
            images = tag_service.search_images(
                all_of + split("tags"), none_of + split("exclude"), any_of + split("any"), status=status_filter
            )
        except tag_service.SearchError as exc:
            raise ValidationError({"q": [str(exc)]}) from exc
        images = tag_service.search_text(images, params.get("text", ""))
        if self.action == "list":
            return image_list_values(images)
        names = ImageTag.objects.select_related("tag").only("image", "tag__name")
        return images.prefetch_related(Prefetch("image_tags", queryset=names))

    def filter_queryset(self, queryset):
        """ImageFilter only where one of its parameters is given: the filter backend builds a FilterSet (its form
        and fields deep-copied) on every request, which without them filters nothing."""
        if not any(key in self.request.query_params for key in ImageFilter.base_filters):
            return queryset
        return super().filter_queryset(queryset)

    @extend_schema(
        parameters=[
            OpenApiParameter("q", OpenApiTypes.STR, description="Query: `a b -c ~d ~e`"),
            OpenApiParameter("tags", OpenApiTypes.STR, description="All of these (comma-separated)"),
            OpenApiParameter("exclude", OpenApiTypes.STR, description="None of these"),
            OpenApiParameter("any", OpenApiTypes.STR, description="At least one of these"),
            OpenApiParameter("text", OpenApiTypes.STR, description="Full text of titles, captions, descriptions"),
        ]
    )
    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(image_rows(page))

    @extend_schema(request={"multipart/form-data": UploadSerializer}, responses={201: ImageSerializer})
    @action(
        detail=False,
        methods=["post"],
        parser_classes=[parsers.MultiPartParser],
        permission_classes=[requires("tagsite.add_image")],
    )
    def upload(self, request):
        """Upload one image (size- and type-checked). 201 when new, 200 when the content is already here."""
        serializer = UploadSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            image, created = store_upload(serializer.validated_data["file"], user=request.user)
        except UploadRejected as exc:
            raise ValidationError({"file": [str(exc)]}) from exc
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(ImageSerializer(image, context={"request": request}).data, status=code)

    @extend_schema(request=TagNamesSerializer, responses=ImageSerializer)
    @action(detail=True, methods=["post"], url_path="tags", permission_classes=[requires("tagsite.add_imagetag")])
    def add_tags(self, request, pk=None):
        """Tag the image by hand (aliases and implications apply)."""
        tag_service.add_tags([self.get_object()], self._tag_names(request), user=request.user)
        return self._fresh_image(request)

    @extend_schema(request=TagNamesSerializer, responses=ImageSerializer)
    @action(detail=True, methods=["post"], url_path="untag", permission_classes=[requires("tagsite.delete_imagetag")])
    def remove_tags(self, request, pk=None):
        tag_service.remove_tags([self.get_object()], self._named_tags(self._tag_names(request)))
        return self._fresh_image(request)

    @extend_schema(request=BulkTagSerializer, responses=OpenApiTypes.OBJECT, operation_id="images_bulk_tags_create")
    @action(
        detail=False,
        methods=["post"],
        url_path="tags",
        url_name="bulk-tags",
        permission_classes=[requires("tagsite.add_imagetag")],
    )
    def bulk_add_tags(self, request):
        """Tag many images at once (the library's select-many): aliases and implications apply.
        Answers how many images and which tags (implied ones included) they now carry."""
        images, names = self._bulk(request)
        tags = tag_service.add_tags(images, names, user=request.user)
        return Response({"images": len(images), "tags": [tag.name for tag in tags]})

    @extend_schema(request=BulkTagSerializer, responses=OpenApiTypes.OBJECT, operation_id="images_bulk_untag_create")
    @action(
        detail=False,
        methods=["post"],
        url_path="untag",
        url_name="bulk-untag",
        permission_classes=[requires("tagsite.delete_imagetag")],
    )
    def bulk_remove_tags(self, request):
        """Untag many images at once. Answers how many images and how many image tags were removed."""
        images, names = self._bulk(request)
        return Response({"images": len(images), "removed": tag_service.remove_tags(images, self._named_tags(names))})

    def _bulk(self, request) -> tuple["list[Image]", "list[str]"]:
        serializer = BulkTagSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ids = set(serializer.validated_data["images"])
        images = list(Image.objects.filter(pk__in=ids))
        missing = sorted(ids - {image.pk for image in images})
        if missing:
            raise ValidationError({"images": [f"No image has the id {', '.join(map(str, missing))}."]})
        return images, serializer.validated_data["tags"]

    @staticmethod
    def _named_tags(names) -> "QuerySet[Tag]":
        """The existing tags these names mean (aliases followed)."""
        return Tag.objects.filter(name__in=set(tag_service.resolve_names(names).values()))

    def _tag_names(self, request) -> "list[str]":  # quoted: `list` is a method name in this class
        serializer = TagNamesSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data["tags"]

    def _fresh_image(self, request) -> Response:
        """The image re-read after a change (the prefetched tags are stale)."""
        return Response(ImageSerializer(self.get_object(), context={"request": request}).data)


class TagViewSet(
    mixins.CreateModelMixin, mixins.UpdateModelMixin, mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet
):
    """Tags, most used first. `?search=` filters by name prefix."""

    permission_classes = [StaffModelPermissions]
    serializer_class = TagSerializer
    pagination_class = TagCursorPagination  # a keyset on (usage count, name): every tag reachable, no OFFSET
    filterset_fields = ["danbooru_category"]

    def get_queryset(self):
        tags = Tag.objects.all()
        if search := self.request.query_params.get("search"):
            tags = tags.filter(name__startswith=tag_service.normalize_tag_name(search))
        return tags

    @extend_schema(
        parameters=[OpenApiParameter("q", OpenApiTypes.STR, required=True)], responses=TagSerializer(many=True)
    )
    @action(detail=False)
    def autocomplete(self, request):
        """Tags whose name or alias starts with `q`, most used first."""
        tags = tag_service.autocomplete(request.query_params.get("q", ""), limit=10)
        return Response(TagSerializer(tags, many=True).data)


class TagAliasSerializer(serializers.ModelSerializer):
    target = serializers.CharField(write_only=True, help_text="Name of the tag the alias points to.")
    tag = TagSerializer(read_only=True)

    class Meta:
        model = TagAlias
        fields = ["id", "antecedent", "target", "tag", "created_at"]

    def create(self, validated_data):
        try:
            return tag_service.create_alias(
                validated_data["antecedent"], validated_data["target"], user=self.context["request"].user
            )
        except tag_service.TagRuleError as exc:
            raise ValidationError({"non_field_errors": [str(exc)]}) from exc


class AliasPagination(CappedCursorPagination):
    """By antecedent (unique: a keyset with no OFFSET for ties), as admin lists them."""

    ordering = "antecedent"


class TagAliasViewSet(mixins.CreateModelMixin, mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet):
    """Aliases: `antecedent` is rewritten to the target tag. Chains are flattened, cycles rejected."""

    queryset = TagAlias.objects.select_related("tag")
    permission_classes = [StaffModelPermissions]
    serializer_class = TagAliasSerializer
    pagination_class = AliasPagination


class TagImplicationSerializer(serializers.ModelSerializer):
    antecedent = serializers.CharField(source="antecedent.name")
    consequent = serializers.CharField(source="consequent.name")

    class Meta:
        model = TagImplication
        fields = ["id", "antecedent", "consequent", "created_at"]

    def create(self, validated_data):
        try:
            return tag_service.create_implication(
                validated_data["antecedent"]["name"],
                validated_data["consequent"]["name"],
                user=self.context["request"].user,
            )
        except tag_service.TagRuleError as exc:
            raise ValidationError({"non_field_errors": [str(exc)]}) from exc


class TagImplicationViewSet(mixins.CreateModelMixin, mixins.DestroyModelMixin, viewsets.ReadOnlyModelViewSet):
    """Implications: images tagged `antecedent` also get `consequent`. Cycles rejected."""

    queryset = TagImplication.objects.select_related("antecedent", "consequent")
    permission_classes = [StaffModelPermissions]
    serializer_class = TagImplicationSerializer


class JobSerializer(serializers.ModelSerializer):
    percent = serializers.FloatField(read_only=True, allow_null=True)
    created_by = serializers.StringRelatedField()
    cancelled_by = serializers.StringRelatedField()
    url = serializers.SerializerMethodField(help_text="The job's page.")

    class Meta:
        model = Job
        fields = [
            "id", "kind", "status", "params", "current", "total", "percent", "counts", "errors",
            "error_count", "message", "advice", "created_by", "created_at", "started_at", "finished_at",
            "cancel_requested_at", "cancelled_by", "url",
        ]  # fmt: skip
        read_only_fields = fields

    def get_url(self, job) -> str:
        return object_url("job-detail", job.pk)


class JobListSerializer(JobSerializer):
    """A job in the list: its first errors (up to 200 entries each) and its parameters (a write or merge job's
    can list 100k image ids) are on its own URL, not repeated per job."""

    class Meta(JobSerializer.Meta):
        fields = [name for name in JobSerializer.Meta.fields if name not in ("errors", "params")]
        read_only_fields = fields


def job_rows(jobs: list[Job]) -> list[dict]:
    """JobListSerializer's output for jobs annotated with their users' names (`JobViewSet.get_queryset`), without
    DRF's per-field calls (most of the list's CPU; tests hold the two equal)."""
    when = datetime_text()
    return [
        {
            "id": job.pk,
            "kind": job.kind,
            "status": job.status,
            "current": job.current,
            "total": job.total,
            "percent": job.percent,
            "counts": job.counts,
            "error_count": job.error_count,
            "message": job.message,
            "advice": job.advice,
            "created_by": job.creator_name,
            "created_at": when(job.created_at),
            "started_at": when(job.started_at),
            "finished_at": when(job.finished_at),
            "cancel_requested_at": when(job.cancel_requested_at),
            "cancelled_by": job.canceller_name,
            "url": object_url("job-detail", job.pk),
        }
        for job in jobs
    ]


class ImportRequestSerializer(serializers.Serializer):
    path = serializers.CharField(
        help_text="The absolute path of a folder on the server inside TAGSITE_IMPORT_ROOTS, imported recursively."
    )

    def validate_path(self, value: str) -> str:
        try:
            return check_import_folder(value, settings.IMPORT_ROOTS)
        except ImportRefused as exc:
            raise ValidationError(str(exc)) from exc


class JobViewSet(viewsets.ReadOnlyModelViewSet):
    """Job records with live progress."""

    queryset = Job.objects.select_related("created_by", "cancelled_by")
    serializer_class = JobSerializer
    filterset_fields = ["kind", "status"]

    def get_queryset(self):
        jobs = super().get_queryset()
        if self.action != "list":
            return jobs
        # the users' names (their `str()`), not their rows
        names = {"creator_name": F("created_by__username"), "canceller_name": F("cancelled_by__username")}
        return jobs.select_related(None).defer("errors", "params").annotate(**names)

    def get_serializer_class(self):
        return JobListSerializer if self.action == "list" else JobSerializer

    def list(self, request, *args, **kwargs):
        return self.get_paginated_response(job_rows(self.paginate_queryset(self.filter_queryset(self.get_queryset()))))

    @extend_schema(request=ImportRequestSerializer, responses={202: JobSerializer})
    @action(detail=False, methods=["post"], url_path="import", permission_classes=[requires("tagsite.add_image")])
    def start_import(self, request):
        """Queue a folder import on the worker (needs `tagsite.add_image`; only folders inside TAGSITE_IMPORT_ROOTS,
        checked now, 400 otherwise, and again by the worker, whose scan never leaves them)."""
        from tagsite.tasks import import_folder_task

        serializer = ImportRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        params = {"path": serializer.validated_data["path"], "roots": settings.IMPORT_ROOTS}
        job = start_job("import_images", import_folder_task, params, request.user)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={200: JobSerializer, 409: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"], permission_classes=[requires("tagsite.cancel_job")])
    def cancel(self, request, pk=None):
        """Cancel a queued job, or stop a running one at its next item (409 when it has already ended)."""
        job = self.get_object()
        if not request_cancel(job, request.user):
            return Response({"detail": f"job #{job.pk} has already ended ({job.status})"}, status=409)
        return Response(JobSerializer(self.get_queryset().get(pk=job.pk)).data)
