"""REST API of suggestions: the review queue, decisions (moderators only), model versions, the worklist, and
accepting (edited) VLM texts."""

from django.db import transaction
from django.db.models import Q
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.pagination import Cursor
from rest_framework.response import Response
from rest_framework.views import APIView

from suggestions import services
from suggestions.filters import QueueQuerySerializer, WorklistFilterSerializer
from suggestions.models import STAGES, MLModelVersion, PromptProfile, TagSuggestion, TextProposal, UnmappedTag
from suggestions.services.describe import get_profile
from suggestions.tasks import start_backlog, start_describe
from tagsite.api import JobSerializer, datetime_text
from tagsite.models import Image, Proposal
from tagsite.pagination import CappedCursorPagination
from tagsite.review import services as review
from tagsite.review.api import CanReview
from tagsite.services.lists import COUNT_CAP, capped_count
from tagsite.services.writeback import select_images
from tagsite.writeback_web import job_answer


class TagSuggestionSerializer(serializers.ModelSerializer):
    tag = serializers.CharField(source="tag.name", read_only=True)
    tag_display = serializers.CharField(source="tag.display_name", read_only=True)
    model = serializers.SerializerMethodField()
    category_name = serializers.SerializerMethodField()
    reviewed_by = serializers.PrimaryKeyRelatedField(source="decided_by", read_only=True, allow_null=True)
    reviewed_at = serializers.DateTimeField(source="decided_at", read_only=True, allow_null=True)

    class Meta:
        model = TagSuggestion
        fields = [
            "id", "image", "tag", "tag_display", "external_tag", "category", "category_name", "confidence",
            "model_version", "model", "producer", "status", "reviewed_by", "reviewed_at", "via", "created_at",
        ]  # fmt: skip
        read_only_fields = fields

    # Methods, not `source="get_category_display"`: DRF inspects the signature of a callable source on every row.
    def get_model(self, suggestion) -> str:
        return str(suggestion.model_version)

    def get_category_name(self, suggestion) -> str:
        return suggestion.get_category_display()


# What a list row of TagSuggestionSerializer reads: plain values, no model objects (three per row with the tag and
# the model version) and no per-field DRF calls, which were most of a queue page's CPU.
SUGGESTION_COLUMNS = (
    "id", "image_id", "tag__name", "tag__display_name", "external_tag", "category", "confidence",
    "model_version_id", "model_version__name", "model_version__version", "producer_id", "status",
    "decided_by_id", "decided_at", "via", "created_at",
)  # fmt: skip


def suggestion_rows(rows: list[dict]) -> list[dict]:
    """TagSuggestionSerializer's output for rows of SUGGESTION_COLUMNS (tests hold the two equal)."""
    labels = {value: str(label) for value, label in TagSuggestion._meta.get_field("category").flatchoices}
    when = datetime_text()
    return [
        {
            "id": row["id"],
            "image": row["image_id"],
            "tag": row["tag__name"],
            "tag_display": row["tag__display_name"],
            "external_tag": row["external_tag"],
            "category": row["category"],
            "category_name": labels.get(row["category"], row["category"]),
            "confidence": row["confidence"],
            "model_version": row["model_version_id"],
            "model": f"{row['model_version__name']} {row['model_version__version']}",  # MLModelVersion.__str__
            "producer": row["producer_id"],
            "status": row["status"],
            "reviewed_by": row["decided_by_id"],
            "reviewed_at": when(row["decided_at"]),
            "via": row["via"],
            "created_at": when(row["created_at"]),
        }
        for row in rows
    ]


VIA = ["api", "page"]


class DecisionSerializer(serializers.Serializer):
    ids = serializers.ListField(child=serializers.IntegerField(), allow_empty=False, max_length=5000)
    status = serializers.ChoiceField(choices=[TagSuggestion.Status.APPROVED, TagSuggestion.Status.REJECTED])
    via = serializers.ChoiceField(choices=VIA, default="api", help_text="Recorded in the audit.")


class ReviewImagesSerializer(serializers.Serializer):
    images = serializers.ListField(child=serializers.IntegerField(), allow_empty=False, max_length=1000)
    threshold = serializers.FloatField(min_value=0, max_value=1)
    via = serializers.ChoiceField(choices=VIA, default="api", help_text="Recorded in the audit.")


class BacklogSerializer(serializers.Serializer):
    model_version = serializers.PrimaryKeyRelatedField(
        queryset=MLModelVersion.objects.filter(active=True),
        allow_null=True,
        default=None,
        help_text="An active model version; empty: every active model.",
    )
    limit = serializers.IntegerField(
        min_value=1, allow_null=True, default=None, help_text="At most this many images per model; empty: all."
    )

    def validate(self, data):
        if data["model_version"] is None and not services.active_models().exists():
            raise serializers.ValidationError("There is no active model.")
        return data


class DecisionResultSerializer(serializers.Serializer):
    approved = serializers.IntegerField()
    rejected = serializers.IntegerField()


class QueuePagination(CappedCursorPagination):
    """The queue's order (oldest image first, each image's tags by category and confidence) in keyset pages: a
    `?cursor=` holds the last row's whole sort key, so page 900 reads what page 1 does, and deciding rows between
    two pages skips none (DRF's own cursor keys on the image id alone and steps through an image's rows by OFFSET,
    which shifts when rows before it leave the queue)."""

    ordering = ("image_id", "category", "-confidence", "id")
    key_types = (int, int, float, int)
    columns = SUGGESTION_COLUMNS  # a page's rows, as `values()`: counted without the joins they read

    def paginate_queryset(self, queryset, request, view=None):
        self.request, self.base_url = request, request.build_absolute_uri()
        subset = getattr(view, "named", None)  # past the cap, so is the whole
        self.count, self.count_capped = capped_count(subset) if subset is not None else (0, False)
        if subset is not None and not self.count_capped:
            # A rarer prefix: its rows, if they are few, listed once; the planner, expecting them spread evenly,
            # would walk the pending rows in image order to find a page of them (100k rows for `hats`: 29 ms).
            self.count, self.count_capped = capped_count(queryset)
            if not self.count_capped:
                queryset = queryset.filter(pk__in=queryset.order_by().values("pk")[: COUNT_CAP + 1])
        elif not self.count_capped:
            self.count, self.count_capped = capped_count(queryset)
        cursor = self.decode_cursor(request)
        key, backwards = (self._key(cursor.position), cursor.reverse) if cursor else (None, False)
        size = self.get_page_size(request)
        flipped = [field[1:] if field.startswith("-") else f"-{field}" for field in self.ordering]
        order = flipped if backwards else self.ordering
        if key is not None:
            queryset = queryset.filter(self._past(key, backwards))
        rows = list(queryset.order_by(*order).values(*self.columns)[: size + 1])
        more = len(rows) > size
        items = rows[:size][::-1] if backwards else rows[:size]
        self.next_key = self._position(items[-1]) if items and (backwards or more) else None
        self.previous_key = self._position(items[0]) if items and (more if backwards else key is not None) else None
        self.display_page_controls = bool(self.next_key or self.previous_key)
        return items

    def _key(self, position: str | None) -> tuple | None:
        if not position:
            return None
        try:
            return tuple(kind(value) for kind, value in zip(self.key_types, position.split(":"), strict=True))
        except ValueError:
            raise NotFound(self.invalid_cursor_message) from None

    def _position(self, row: dict) -> str:
        return ":".join(repr(row[field.removeprefix("-")]) for field in self.ordering)

    def _past(self, key: tuple, backwards: bool) -> Q:
        """Rows after `key` in the order (before it `backwards`): the first field as a range the (status, image)
        index serves, the rest compared in order within the key's image."""
        fields = [field.removeprefix("-") for field in self.ordering]
        later = Q()
        for index, field in enumerate(self.ordering):
            ascending = not field.startswith("-")
            lookup = "gt" if ascending != backwards else "lt"
            later |= Q(
                **dict(zip(fields[:index], key[:index], strict=True)), **{f"{fields[index]}__{lookup}": key[index]}
            )
        return Q(**{f"{fields[0]}__{'lte' if backwards else 'gte'}": key[0]}) & later

    def get_next_link(self):
        if self.next_key is None:
            return None
        return self.encode_cursor(Cursor(offset=0, reverse=False, position=self.next_key))

    def get_previous_link(self):
        if self.previous_key is None:
            return None
        return self.encode_cursor(Cursor(offset=0, reverse=True, position=self.previous_key))


class TagSuggestionViewSet(viewsets.ReadOnlyModelViewSet):
    """Tag suggestions: the review queue (oldest image first) and decisions on one or many, through the review
    core (`/api/review/tagsuggestion/` is the generic form)."""

    serializer_class = TagSuggestionSerializer
    pagination_class = QueuePagination
    review_kind = "tagsuggestion"

    def get_permissions(self):
        deciding = self.action in {"approve", "reject", "decide", "review_images", "backlog"}
        return [*super().get_permissions(), *([CanReview()] if deciding else [])]

    def get_queryset(self):
        if self.action != "list":
            return TagSuggestion.objects.select_related("tag", "model_version")
        query = QueueQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        filters = dict(query.validated_data)
        image = filters.pop("image")
        suggestions, self.named = services.review_queue(**filters)
        if image is not None:
            suggestions = suggestions.filter(image_id=image)
            self.named = self.named.filter(image_id=image) if self.named is not None else None
        return suggestions  # QueuePagination orders them and counts `named` first

    @extend_schema(parameters=[QueueQuerySerializer])
    def list(self, request, *args, **kwargs):
        rows = self.paginate_queryset(self.get_queryset())  # SUGGESTION_COLUMNS
        return self.get_paginated_response(suggestion_rows(rows))

    @extend_schema(request=None, responses=TagSuggestionSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        """Approve: the image gets the tag (source `model`, with the model's name)."""
        return self._decide_one(request, TagSuggestion.Status.APPROVED)

    @extend_schema(request=None, responses=TagSuggestionSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        """Reject: remembered, so the same model does not suggest this tag for this image again."""
        return self._decide_one(request, TagSuggestion.Status.REJECTED)

    def _decide_one(self, request, status):
        suggestion = self.get_object()
        services.decide([suggestion], status, request.user, via="api")
        suggestion.refresh_from_db()
        return Response(TagSuggestionSerializer(suggestion).data)

    @extend_schema(request=DecisionSerializer, responses=DecisionResultSerializer)
    @action(detail=False, methods=["post"])
    def decide(self, request):
        """Approve or reject many suggestions by id."""
        serializer = DecisionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        chosen = TagSuggestion.objects.filter(pk__in=data["ids"])
        count = services.decide(chosen, data["status"], request.user, data["via"])
        empty = {TagSuggestion.Status.APPROVED: 0, TagSuggestion.Status.REJECTED: 0}
        return Response({**empty, data["status"]: count})

    @extend_schema(request=ReviewImagesSerializer, responses=DecisionResultSerializer)
    @action(detail=False, methods=["post"], url_path="review-images")
    def review_images(self, request):
        """Per image: approve pending suggestions at or above `threshold`, reject the rest."""
        serializer = ReviewImagesSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        images = Image.objects.filter(pk__in=data["images"])
        return Response(services.review_images(images, data["threshold"], request.user, data["via"]))

    @extend_schema(request=BacklogSerializer, responses={202: JobSerializer})
    @action(detail=False, methods=["post"])
    def backlog(self, request):
        """Tag the images a model (or every active model) has not processed yet, on the `gpu` queue;
        follow the returned job at /api/jobs/{id}/."""
        serializer = BacklogSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        job = start_backlog(
            serializer.validated_data["model_version"], serializer.validated_data["limit"], request.user
        )
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class MLModelVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = MLModelVersion
        fields = [
            "id", "name", "version", "kind", "label_source", "sha256", "input_size", "fixed_batch",
            "label_count", "thresholds", "tag_thresholds", "use_mcut", "active", "source", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class MLModelVersionListSerializer(MLModelVersionSerializer):
    """The list's: per-label thresholds (up to thousands a version) only in a version's own answer."""

    class Meta(MLModelVersionSerializer.Meta):
        fields = [field for field in MLModelVersionSerializer.Meta.fields if field != "tag_thresholds"]
        read_only_fields = fields


class MLModelVersionViewSet(viewsets.ReadOnlyModelViewSet):
    """Installed tagger versions (install with `manage.py install_model`); a version's per-label thresholds are
    in its own answer (`/api/model-versions/{id}/`), not in the list."""

    serializer_class = MLModelVersionSerializer
    filterset_fields = ["name", "active"]

    def get_queryset(self):
        if self.action == "list":
            return MLModelVersion.objects.defer("tag_thresholds", "disabled_labels")
        return MLModelVersion.objects.all()

    def get_serializer_class(self):
        return MLModelVersionListSerializer if self.action == "list" else MLModelVersionSerializer


class UnmappedTagSerializer(serializers.ModelSerializer):
    waiting = serializers.IntegerField(read_only=True, help_text="Images whose predictions wait on this label.")

    class Meta:
        model = UnmappedTag
        fields = ["id", "source", "external_tag", "category", "waiting", "first_seen"]
        read_only_fields = fields


class WorklistPagination(CappedCursorPagination):
    """The worklist's order (most waited on first) in keyset pages: a `?cursor=` holds the last entry's sort key
    (`services.worklist_page`), where DRF's own cursor would key on the count alone and step through ties by OFFSET.
    Its own, not the project default: the order is not by id."""

    def paginate_queryset(self, queryset, request, view=None):
        self.request, self.base_url = request, request.build_absolute_uri()
        self.count, self.count_capped = capped_count(queryset.values("pk"))  # entries, not their images waiting
        cursor = self.decode_cursor(request)
        position = cursor.position if cursor else None
        backwards = bool(cursor and cursor.reverse)
        self.keyset = services.worklist_page(
            queryset, self.get_page_size(request), None if backwards else position, position if backwards else None
        )
        self.display_page_controls = self.keyset.has_other_pages
        return self.keyset.items

    def get_next_link(self):
        after = self.keyset.next_after
        return None if after is None else self.encode_cursor(Cursor(offset=0, reverse=False, position=after))

    def get_previous_link(self):
        before = self.keyset.previous_before
        return None if before is None else self.encode_cursor(Cursor(offset=0, reverse=True, position=before))


class UnmappedTagViewSet(viewsets.ReadOnlyModelViewSet):
    """The worklist of labels predicted without a mapping, most waited on first."""

    serializer_class = UnmappedTagSerializer
    pagination_class = WorklistPagination

    def get_queryset(self):
        query = WorklistFilterSerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        return services.worklist(query.validated_data["source"] or None)

    @extend_schema(parameters=[WorklistFilterSerializer])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)


class TextEditSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    text = serializers.CharField(required=False, allow_blank=False, max_length=20_000, trim_whitespace=True)


class TextAcceptSerializer(serializers.Serializer):
    items = TextEditSerializer(many=True, allow_empty=False, max_length=1000)
    via = serializers.ChoiceField(choices=VIA, default="api", help_text="Recorded in the audit.")


class TextAccept(APIView):
    """Accept titles, captions and descriptions, each as proposed or as edited (`text`): edit-and-accept in one
    step. An edit changes only a pending proposal (the model's own answer stays in `model_text`); the decision
    goes through the review core like every other."""

    permission_classes = [permissions.IsAdminUser, CanReview]
    review_kind = "textproposal"

    @extend_schema(request=TextAcceptSerializer, responses=dict)
    def post(self, request):
        data = TextAcceptSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        edits = {item["id"]: " ".join(item["text"].split()) for item in data.validated_data["items"] if "text" in item}
        too_long = TextProposal.objects.filter(pk__in=list(edits), field=TextProposal.Field.TITLE)
        for pk in too_long.values_list("pk", flat=True):
            if len(edits[pk]) > Image._meta.get_field("title").max_length:
                return Response({"detail": f"title #{pk} is longer than 255 characters"}, status=400)
        ids = [item["id"] for item in data.validated_data["items"]]
        # The edits first, committed on their own: a pending proposal's text is the moderator's to edit whatever the
        # decision does, and decide() outside a transaction of ours retries a deadlock.
        with transaction.atomic():
            pending = TextProposal.objects.select_for_update().filter(
                pk__in=list(edits), status=Proposal.Status.PENDING
            )
            edited = [proposal for proposal in pending.only("text") if proposal.text != edits[proposal.pk]]
            for proposal in edited:
                proposal.text = edits[proposal.pk]
            TextProposal.objects.bulk_update(edited, ["text"])
        outcome = review.decide(
            kind="textproposal", ids=ids, status=Proposal.Status.APPROVED, user=request.user,
            via=data.validated_data["via"],
        )  # fmt: skip
        return Response(outcome.as_json())


class DescribeRequestSerializer(serializers.Serializer):
    ids = serializers.ListField(child=serializers.IntegerField(), required=False, default=list, max_length=100_000)
    query = serializers.CharField(required=False, default="", allow_blank=True, help_text="A library search")
    folder = serializers.CharField(required=False, default="", allow_blank=True)
    profile = serializers.SlugField(default="default")
    stages = serializers.ListField(child=serializers.ChoiceField(STAGES), default=list(STAGES), allow_empty=False)
    two_step = serializers.BooleanField(default=False)
    overwrite = serializers.BooleanField(default=False)


class DescribeStart(APIView):
    """Queue a describe run (the VLM stages, `llm` queue) over ids, a library search or a folder; its answers wait
    for review. Needs the text review permission (moderators)."""

    permission_classes = [permissions.IsAdminUser, CanReview]
    review_kind = "textproposal"

    @extend_schema(request=DescribeRequestSerializer, responses={202: dict})
    def post(self, request):
        data = DescribeRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        try:
            get_profile(values["profile"])
        except PromptProfile.DoesNotExist:
            return Response({"profile": [f"no prompt profile {values['profile']!r}"]}, status=400)
        try:
            ids = select_images(values["ids"], values["query"], values["folder"])
        except ValueError as exc:
            return Response({"detail": str(exc)}, status=400)
        options = {key: values[key] for key in ("profile", "two_step", "overwrite")} | {"stages": values["stages"]}
        job = start_describe(ids, options, request.user)
        return Response(job_answer(job), status=status.HTTP_202_ACCEPTED)
