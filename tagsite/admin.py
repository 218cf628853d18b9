import html
from functools import cache
from urllib.parse import quote as url_quote

from django import forms
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.templatetags.admin_urls import add_preserved_filters
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ChangeList
from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.db import connection, models
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import RFC3986_SUBDELIMS
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _

from tagsite import review
from tagsite.models import (
    AutoApproveRule,
    Decision,
    Image,
    ImageStage,
    ImageTag,
    Job,
    LLMEndpoint,
    LLMRole,
    Producer,
    Tag,
    TagAlias,
    TagImplication,
)
from tagsite.services import tags as tag_service
from tagsite.services.ingest import UploadRejected, store_upload
from tagsite.services.lists import (
    COUNT_CAP,
    IMAGE_LIST_DEFER,
    CappedPaginator,
    image_ids_by_path,
    related_defer,
    tag_ids_by_prefix,
)


def thumbnail_html(image: Image, size: int = 64) -> str:
    """The thumbnail as an <img> (format_html's lazy escaping, a tenth of a 50-row list's cells, is not needed)."""
    if not image.thumbnail:
        return "-"
    src, size = html.escape(image.thumbnail_url), int(size)
    return mark_safe(f'<img src="{src}" style="max-width:{size}px;max-height:{size}px" alt="">')


class ReadOnlyAdmin(admin.ModelAdmin):
    """Records the pipeline writes: to look at, never to edit by hand."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class LargeChangeList(ChangeList):
    """Rows link to their change page, with the list's filters and search kept, through a link made once per
    page: Django reverses each row's link and, on a filtered or searched list, resolve()s it again to add the
    filters (about 0.2 ms a row)."""

    def __init__(self, request, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        opts = self.opts
        name = f"admin:{opts.app_label}_{opts.model_name}_change"
        url = reverse(name, args=["__pk__"], current_app=self.model_admin.admin_site.name)
        self.change_url_pattern = add_preserved_filters(
            {"preserved_filters": self.preserved_filters, "opts": opts}, url
        )
        self.preserved_filters = ""  # only the rows' links read it: they have them already

    def get_queryset(self, request, exclude_parameters=None):
        queryset = super().get_queryset(request, exclude_parameters)
        if self.model_admin.list_defer:
            queryset = queryset.defer(*self.model_admin.list_defer)
        return queryset.prefetch_related(*self.model_admin.list_prefetch_related)

    def get_results(self, request):
        """The page's rows, their `list_small_relations` filled from the tables read once (`small_table`)."""
        super().get_results(request)
        for name, columns in self.model_admin.list_small_relations.items():
            field = self.model._meta.get_field(name)
            rows = small_table(request, field.related_model, columns)
            for result in self.result_list:
                if not field.is_cached(result) and getattr(result, field.attname) in rows:
                    field.set_cached_value(result, rows[getattr(result, field.attname)])

    def url_for_result(self, result):
        pk = url_quote(str(quote(getattr(result, self.pk_attname))), safe=RFC3986_SUBDELIMS + "/~:@")
        return self.change_url_pattern.replace("__pk__", pk, 1)  # the path comes first


@cache
def timestamp_column(model: type[models.Model], name: str):
    """The list column of the date and time field `name` as `2026-12-08 14:03` (current time zone), sorted by
    the field: Django's localised format cost 25 µs a cell (1.2 ms a page of 50 per such column), this 5."""

    @admin.display(description=model._meta.get_field(name).verbose_name, ordering=name)
    def column(obj):
        value = getattr(obj, name)
        return timezone.localtime(value).strftime("%Y-%m-%d\u00a0%H:%M") if value else None

    column.__name__ = name  # its cells keep the field's CSS class
    return column


def is_datetime_field(model: type[models.Model], name) -> bool:
    try:
        return isinstance(name, str) and isinstance(model._meta.get_field(name), models.DateTimeField)
    except FieldDoesNotExist:
        return False


def small_table(request, model: type[models.Model], columns: tuple[str, ...]) -> dict:
    """A small table's rows (model versions, categories) by id with `columns` only, read once per request for a
    list's filter and rows."""
    tables = request.__dict__.setdefault("_admin_small_tables", {})
    if (model, columns) not in tables:
        tables[model, columns] = {row.pk: row for row in model.objects.only(*columns)}
    return tables[model, columns]


class LargeListAdmin(admin.ModelAdmin):
    """A changelist over up to millions of rows: the count stops at 1,000 and is not repeated unfiltered;
    with `tag_search` (the path to a Tag) a search is by tag name or alias prefix, resolved to tag ids first;
    `list_defer` names the large columns (of the model or of a `list_select_related` one) the list does not show;
    `list_prefetch_related` names relations shown by a query of their own: past about five joins PostgreSQL's
    planning of the page's query costs more than the query (7 joins: 13-30 ms); `list_small_relations` (relation:
    columns) names those to a table of a few rows, filled from one read of it per request (`small_table`), which
    a filter of the same relation shares.
    Per-row work is kept to formatting the row: most of a page's CPU is per cell; date and time fields are shown
    as timestamps (`timestamp_column`)."""

    show_full_result_count = False
    paginator = CappedPaginator
    change_list_template = "admin/large_change_list.html"  # rows rendered by tagsite/templatetags/large_list.py
    list_per_page = 50
    tag_search = ""
    list_defer: tuple[str, ...] = ()
    list_prefetch_related: tuple[str, ...] = ()
    list_small_relations: dict[str, tuple[str, ...]] = {}

    def get_changelist(self, request, **kwargs):
        return LargeChangeList

    def get_list_display(self, request):
        named = {*self.list_editable, *(self.list_display_links or ())}  # these must stay field names
        return [
            timestamp_column(self.model, name) if is_datetime_field(self.model, name) and name not in named else name
            for name in super().get_list_display(request)
        ]

    @admin.display(description=mark_safe('<input type="checkbox" id="action-toggle">'))
    def action_checkbox(self, obj):
        """Django's row checkbox, written out: rendering a widget's templates per row cost more than the row."""
        label = _("Select this object for an action - {}").format(html.escape(str(obj)))  # format_html's escaping
        return mark_safe(
            f'<input type="checkbox" name="{ACTION_CHECKBOX_NAME}" value="{html.escape(str(obj.pk))}" '
            f'class="action-select" aria-label="{label}">'
        )

    def get_search_results(self, request, queryset, search_term):
        if not self.tag_search or not search_term.strip():
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(**{f"{self.tag_search}__in": tag_ids_by_prefix(search_term)}), False


def defer_all_but(model: type[models.Model], shown: tuple[str, ...], relation: str = "") -> tuple[str, ...]:
    """`list_defer` entries for every column of `model` (reached through the select_related `relation`, or the
    list's own) but its primary key and `shown`: each column read is converted and set on every row's object."""
    prefix = f"{relation}__" if relation else ""
    keep = {*shown, model._meta.pk.name}
    return tuple(f"{prefix}{field.name}" for field in model._meta.concrete_fields if field.name not in keep)


class ImageTagForm(forms.ModelForm):
    """A link's tag is chosen once: changing it would bypass the tag service; delete the row and add another."""

    class Meta:
        model = ImageTag
        fields = ["tag"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            # its tag (read with the row) as the one option of a plain select: the autocomplete widget looked its
            # selected tag up again per row, three queries a row on an image with 25 tags
            field = self.fields["tag"]
            field.disabled = True
            field.widget = forms.Select(choices=[(self.instance.tag_id, str(self.instance.tag))])


class ImageTagInline(admin.TabularInline):
    model = ImageTag
    form = ImageTagForm
    extra = 0
    autocomplete_fields = ["tag"]
    readonly_fields = ["source", "added_by", "model_name", "created_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("tag", "added_by")


class ImageStageInline(admin.TabularInline):
    model = ImageStage
    extra = 0
    readonly_fields = ["stage", "status", "error", "updated_at"]
    can_delete = False


class ImageUploadForm(forms.ModelForm):
    """Adding an image in admin means uploading it: the same checks as the page and the API."""

    file = forms.FileField(help_text="An image file; size and type are checked.")

    class Meta:
        model = Image
        fields = []

    def clean(self):
        upload = self.cleaned_data.get("file")
        if upload is not None:
            try:
                self.instance, _ = store_upload(upload, user=getattr(self, "user", None))
            except UploadRejected as exc:
                raise forms.ValidationError(str(exc)) from exc
        return self.cleaned_data


class ValuesFilter(admin.SimpleListFilter):
    """A column's known values (`parameter_name` is the column), listed without admin's SELECT DISTINCT over
    every row."""

    def values(self) -> list[tuple[str, str]]:
        raise NotImplementedError

    def lookups(self, request, model_admin):
        return self.values()

    def queryset(self, request, queryset):
        return queryset.filter(**{self.parameter_name: self.value()}) if self.value() else queryset


class FormatFilter(ValuesFilter):
    title = "format"
    parameter_name = "format"

    def values(self):
        return [(name, name) for name in ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP", "MPO")]


class RatingFilter(ValuesFilter):
    """The taggers' rating labels."""

    title = "rating"
    parameter_name = "rating"

    def values(self):
        return [(name, name) for name in ("general", "sensitive", "questionable", "explicit")]


class ReviewKindFilter(ValuesFilter):
    """The registered review kinds."""

    title = "kind"
    parameter_name = "kind"

    def values(self):
        return [(kind.name, kind.label or kind.name) for kind in review.all_kinds()]


@admin.register(Image)
class ImageAdmin(LargeListAdmin):
    list_display = ["thumb", "filename", "status", "format", "dimensions", "size", "created_at"]
    list_filter = ["status", FormatFilter, ("created_at", admin.DateFieldListFilter)]
    list_defer = IMAGE_LIST_DEFER
    search_fields = ["path"]
    readonly_fields = [
        "thumb_large", "path", "sha256", "size", "mtime", "format", "width", "height", "orientation",
        "frames", "thumbnail", "status", "error", "uploaded_by", "created_at", "updated_at",
        "metadata_written_at", "metadata_fingerprint",
    ]  # fmt: skip
    inlines = [ImageTagInline, ImageStageInline]
    actions = ["write_metadata"]

    @admin.action(description="Write approved tags into the files", permissions=["write_metadata"])
    def write_metadata(self, request, queryset):
        """One write job for the selection; the message links to its page."""
        from tagsite.services.writeback import start_write_job

        job = start_write_job({"ids": list(queryset.values_list("pk", flat=True))}, user=request.user)
        url = reverse("job-detail", args=[job.pk])
        self.message_user(request, format_html('Write job <a href="{}">#{}</a> queued.', url, job.pk))

    def has_write_metadata_permission(self, request) -> bool:
        return request.user.has_perm("tagsite.write_metadata")

    def get_search_results(self, request, queryset, search_term):
        """A tag name or alias (images carrying it), a SHA-256, or else part of the path."""
        term = search_term.strip()
        if not term:
            return queryset, False
        if len(term) == 64 and all(ch in "0123456789abcdef" for ch in term.lower()):
            return queryset.filter(sha256=term.lower()), False
        tags = tag_service.resolve_names([term])
        tag = Tag.objects.filter(name__in=tags.values()).values_list("pk", flat=True).first()
        if tag is not None:
            return queryset.filter(pk__in=ImageTag.objects.filter(tag_id=tag).values("image_id")), False
        return queryset.filter(path__contains=term), False

    @admin.display(description="thumbnail")
    def thumb(self, image):
        return thumbnail_html(image)

    @admin.display(description="width × height", ordering="width")
    def dimensions(self, image):
        return f"{image.width} × {image.height}" if image.width else None

    @admin.display(description="thumbnail")
    def thumb_large(self, image):
        return thumbnail_html(image, 320)

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            # A class per request: the uploader must not be shared between threads serving others.
            return type("ImageUploadForm", (ImageUploadForm,), {"user": request.user})
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        return ["file"] if obj is None else super().get_fields(request, obj)

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.readonly_fields

    def get_inlines(self, request, obj):
        return [] if obj is None else self.inlines

    def save_formset(self, request, form, formset, change):
        """Tags added or removed in the inline go through the tag service: aliases, implications, who added them."""
        if formset.model is not ImageTag:
            return super().save_formset(request, form, formset, change)
        added = formset.save(commit=False)  # new rows only: an existing row's tag cannot change
        tag_service.remove_tags([form.instance], [link.tag for link in formset.deleted_objects])
        tag_service.add_tags([form.instance], [link.tag.name for link in added], user=request.user)


class TagForm(forms.ModelForm):
    class Meta:
        model = Tag
        fields = ["name", "display_name", "danbooru_category"]

    def clean_name(self):
        """The canonical name, so `Cat` next to `cat` is a form error, not a database error."""
        name = tag_service.normalize_tag_name(self.cleaned_data["name"])
        if not name:
            raise forms.ValidationError("A tag needs a name.")
        if Tag.objects.filter(name=name).exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(f"The tag {name} already exists.")
        return name


@admin.register(Tag)
class TagAdmin(LargeListAdmin):
    form = TagForm
    list_display = ["name", "display_name", "danbooru_category", "usage_count"]
    list_filter = ["danbooru_category"]
    search_fields = ["name"]  # by name or alias prefix: LargeListAdmin
    tag_search = "pk"
    readonly_fields = ["usage_count", "created_at"]


class TagAliasForm(forms.ModelForm):
    class Meta:
        model = TagAlias
        fields = ["antecedent", "tag"]

    def clean(self):
        data = super().clean()
        antecedent, tag = data.get("antecedent"), data.get("tag")
        if antecedent and tag and tag_service.normalize_tag_name(antecedent) == tag.name:
            raise forms.ValidationError("An alias cannot point at itself.")
        return data


@admin.register(TagAlias)
class TagAliasAdmin(LargeListAdmin):
    form = TagAliasForm
    list_display = ["antecedent", "tag", "created_by", "created_at"]
    list_select_related = ["tag", "created_by"]
    search_fields = ["antecedent", "tag__name"]  # a tag's aliases, by its name or an alias prefix: LargeListAdmin
    tag_search = "tag"
    autocomplete_fields = ["tag"]

    def save_model(self, request, obj, form, change):
        alias = tag_service.create_alias(obj.antecedent, obj.tag.name, user=request.user)
        obj.pk, obj.antecedent, obj.tag = alias.pk, alias.antecedent, alias.tag


class TagImplicationForm(forms.ModelForm):
    class Meta:
        model = TagImplication
        fields = ["antecedent", "consequent"]

    def clean(self):
        data = super().clean()
        antecedent, consequent = data.get("antecedent"), data.get("consequent")
        if antecedent and consequent and antecedent in tag_service.implied_closure([consequent]):
            raise forms.ValidationError(f"{antecedent.name} => {consequent.name} would make a cycle.")
        return data


@admin.register(TagImplication)
class TagImplicationAdmin(LargeListAdmin):
    form = TagImplicationForm
    list_display = ["antecedent", "consequent", "created_by", "created_at"]
    list_select_related = ["antecedent", "consequent", "created_by"]
    search_fields = ["antecedent__name", "consequent__name"]
    autocomplete_fields = ["antecedent", "consequent"]

    def save_model(self, request, obj, form, change):
        implication = tag_service.create_implication(obj.antecedent.name, obj.consequent.name, user=request.user)
        obj.pk = implication.pk


@admin.register(ImageTag)
class ImageTagAdmin(LargeListAdmin):
    """Adding and deleting links goes through the tag service, like every other way of tagging an image."""

    list_display = ["image", "tag", "source", "added_by", "model_name", "created_at"]
    list_filter = ["source"]
    list_select_related = ["image", "tag", "added_by"]
    list_defer = related_defer("image", IMAGE_LIST_DEFER)
    search_fields = ["tag__name"]
    tag_search = "tag"
    autocomplete_fields = ["tag"]
    raw_id_fields = ["image"]
    fields = ["image", "tag", "source", "added_by", "model_name", "created_at"]
    readonly_fields = ["source", "added_by", "model_name", "created_at"]

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is None else ["image", "tag", *self.readonly_fields]

    def save_model(self, request, obj, form, change):
        if change:
            return  # nothing of an existing link is editable
        tag_service.add_tags([obj.image], [obj.tag.name], user=request.user)
        obj.pk = ImageTag.objects.get(image=obj.image, tag=obj.tag).pk

    def delete_model(self, request, obj):
        tag_service.remove_tags([obj.image], [obj.tag])

    def delete_queryset(self, request, queryset):
        for link in queryset.select_related("image", "tag"):
            tag_service.remove_tags([link.image], [link.tag])


def stage_names() -> list[str]:
    """The stages images have records of (the feature apps name their own), read as a skip scan of the (stage,
    status) index: one probe per stage, not admin's SELECT DISTINCT over a row per image and stage."""
    table = connection.ops.quote_name(ImageStage._meta.db_table)
    sql = (
        f"WITH RECURSIVE s(stage) AS (SELECT min(stage) FROM {table} UNION ALL "  # noqa: S608 - the model's table
        f"SELECT (SELECT min(stage) FROM {table} WHERE stage > s.stage) FROM s WHERE s.stage IS NOT NULL) "
        "SELECT stage FROM s WHERE stage IS NOT NULL"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return [stage for (stage,) in cursor.fetchall()]


class StageFilter(ValuesFilter):
    title = "stage"
    parameter_name = "stage"

    def values(self):
        return [(stage, stage) for stage in stage_names()]


@admin.register(ImageStage)
class ImageStageAdmin(LargeListAdmin):
    """Search: part of an image's path (its images found first, at most 1,000) or of a failed stage's error."""

    list_display = ["image", "stage", "status", "error", "updated_at"]
    list_select_related = ["image"]
    list_defer = related_defer("image", IMAGE_LIST_DEFER)
    list_filter = [StageFilter, "status"]
    search_fields = ["image__path", "error"]
    raw_id_fields = ["image"]

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        images = image_ids_by_path(term)
        # an error is only on a failed stage: the (stage, status) index finds those without reading the others
        failed = ImageStage.objects.filter(
            stage__in=stage_names(), status=ImageStage.Status.FAILED, error__icontains=term
        ).values_list("pk", flat=True)[:COUNT_CAP]
        return queryset.filter(models.Q(image_id__in=images) | models.Q(pk__in=list(failed))), False


@admin.register(Job)
class JobAdmin(LargeListAdmin):
    list_display = ["id", "kind", "status", "current", "total", "error_count", "created_at", "finished_at"]
    list_filter = ["kind", "status"]
    list_defer = ("params", "counts", "errors", "message", "advice")
    readonly_fields = [field.name for field in Job._meta.fields]


class LLMRoleInline(admin.TabularInline):
    model = LLMRole
    extra = 0


@admin.register(LLMEndpoint)
class LLMEndpointAdmin(admin.ModelAdmin):
    """Endpoints hold the *name* of the API key's environment variable, never the key."""

    list_display = ["name", "kind", "base_url", "model", "max_parallel", "timeout", "api_key_env"]
    list_filter = ["kind"]
    inlines = [LLMRoleInline]


@admin.register(LLMRole)
class LLMRoleAdmin(admin.ModelAdmin):
    list_display = ["role", "endpoint", "model"]


@admin.register(Producer)
class ProducerAdmin(admin.ModelAdmin):
    """Who proposed what: written by installs and runs, read here."""

    list_display = ["name", "version", "prompt_version", "kind", "endpoint", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name", "version", "prompt_version"]
    readonly_fields = ["created_at"]


class AutoApproveRuleForm(forms.ModelForm):
    kind = forms.ChoiceField(choices=())

    class Meta:
        model = AutoApproveRule
        fields = ["name", "kind", "producer", "min_confidence", "active"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = [(kind.name, kind.label or kind.name) for kind in review.all_kinds()]


@admin.register(AutoApproveRule)
class AutoApproveRuleAdmin(admin.ModelAdmin):
    """Approvals without a human are data: which kind, which producer (or any), from which confidence."""

    form = AutoApproveRuleForm
    list_display = ["name", "kind", "producer", "min_confidence", "active", "created_by", "created_at"]
    list_filter = ["kind", "active"]
    list_editable = ["active"]

    def save_model(self, request, obj, form, change):
        obj.created_by = obj.created_by or request.user
        super().save_model(request, obj, form, change)


@admin.register(Decision)
class DecisionAdmin(LargeListAdmin, ReadOnlyAdmin):
    """The audit of every decision on every kind: never edited or deleted."""

    list_display = ["created_at", "kind", "object_id", "previous", "status", "applied", "user", "via", "rule"]
    list_filter = [ReviewKindFilter, "status", "applied", "via"]
    list_select_related = ["user", "rule"]
    search_fields = ["user__username", "=object_id"]

    def get_search_results(self, request, queryset, search_term):
        """Part of a username (the users found first: never a join and a text match per decision) or an object id."""
        term = search_term.strip()
        if not term:
            return queryset, False
        users = list(get_user_model().objects.filter(username__icontains=term).values_list("pk", flat=True)[:COUNT_CAP])
        found = models.Q(user_id__in=users)
        if term.isdigit() and len(term) < 19:
            found |= models.Q(object_id=int(term))
        return queryset.filter(found), False
