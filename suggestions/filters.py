"""Query strings and forms of the pages and the API, validated: a bad value is a 400 or a message, never a 500."""

from django.contrib import messages
from rest_framework import serializers

from suggestions.models import TagSuggestion
from suggestions.services import WORKLIST_ACTIONS


class QueueFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=TagSuggestion.Status.choices,
        allow_blank=True,
        default=TagSuggestion.Status.PENDING,
        help_text="pending (default), approved, rejected; empty: all",
    )
    model = serializers.CharField(allow_blank=True, default="", help_text="Model name")
    tag = serializers.CharField(allow_blank=True, default="", help_text="Tag or label name prefix")
    min_confidence = serializers.FloatField(min_value=0, max_value=1, default=None)
    max_confidence = serializers.FloatField(min_value=0, max_value=1, default=None)


class QueueQuerySerializer(QueueFilterSerializer):
    image = serializers.IntegerField(min_value=1, default=None, help_text="Only this image's suggestions")


class WorklistFilterSerializer(serializers.Serializer):
    source = serializers.CharField(allow_blank=True, default="", help_text="Only labels of this source")


class WorklistDecisionSerializer(serializers.Serializer):
    ids = serializers.ListField(child=serializers.IntegerField(), allow_empty=False)
    action = serializers.ChoiceField(choices=WORKLIST_ACTIONS)
    tag = serializers.CharField(allow_blank=True, default="")


class ReportFilterSerializer(serializers.Serializer):
    model = serializers.CharField(allow_blank=True, default="")
    target = serializers.FloatField(min_value=0, max_value=1, default=None)


def error_lines(errors: dict) -> list[str]:
    """`field: problem` per invalid field, list fields' errors (keyed by index) flattened."""
    flat = lambda details: [d for ds in details.values() for d in ds] if isinstance(details, dict) else details  # noqa: E731
    return [f"{name}: {' '.join(map(str, flat(details)))}" for name, details in errors.items()]


def page_query(request, serializer_class) -> dict:
    """Validated `request.GET` for a page: each invalid field becomes a message and is left out."""
    query = request.GET.copy()
    serializer = serializer_class(data=query)
    if not serializer.is_valid():
        for line in error_lines(serializer.errors):
            messages.error(request, line)
        for name in serializer.errors:
            query.pop(name)
        serializer = serializer_class(data=query)
        serializer.is_valid(raise_exception=True)
    return serializer.validated_data
