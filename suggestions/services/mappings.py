"""Mapping labels to internal tags, and the worklist of labels without a mapping."""

import csv
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce

from suggestions.models import (
    HeldPrediction,
    MLModelVersion,
    TagMapping,
    TagSuggestion,
    UnmappedTag,
)
from suggestions.services.review import Candidate, create_suggestions
from tagsite.models import Image, Tag
from tagsite.services.lists import KeysetPage, page_key
from tagsite.services.tags import get_or_create_tags, resolve_names


def resolve_labels(
    model: MLModelVersion, candidates: list[Candidate]
) -> tuple[dict[str, tuple[Tag, float]], dict[str, UnmappedTag]]:
    """Labels to (internal tag, confidence factor) through TagMapping, ignored ones left out; unmapped labels
    get a same-name tag or a worklist entry, by setting."""
    source = model.label_source
    labels = {c.label: c.category for c in candidates}
    mappings = {
        m.external_tag: m
        for m in TagMapping.objects.filter(source=source, external_tag__in=list(labels)).select_related("tag")
    }
    unmapped = [(label, category) for label, category in labels.items() if label not in mappings]
    held: dict[str, UnmappedTag] = {}
    if unmapped and settings.SUGGESTIONS_UNMAPPED == "create":
        mappings.update(map_to_same_name(source, unmapped))
    else:
        for label, category in unmapped:
            held[label], _ = UnmappedTag.objects.get_or_create(
                source=source, external_tag=label, defaults={"category": category}
            )
    mapped = {label: (m.tag, m.confidence) for label, m in mappings.items() if m.tag is not None}
    return mapped, held


def map_to_same_name(source: str, labels: list[tuple[str, int]], user=None) -> dict[str, TagMapping]:
    """Mappings of labels to internal tags of their own normalised names (aliases applied), made as needed."""
    by_category: dict[int, list[str]] = defaultdict(list)
    for label, category in labels:
        by_category[category].append(label)
    tags = {}
    for category, names in by_category.items():
        tags.update(get_or_create_tags(names, category=category))
    TagMapping.objects.bulk_create(
        [
            TagMapping(source=source, external_tag=label, tag=tags[label], created_by=user, automatic=True)
            for label in tags
        ],
        ignore_conflicts=True,
    )
    return {
        m.external_tag: m
        for m in TagMapping.objects.filter(source=source, external_tag__in=list(tags)).select_related("tag")
    }


@transaction.atomic
def set_mapping(source: str, external_tag: str, tag: Tag | None, user=None, confidence: float = 1.0) -> TagMapping:
    """Map (or ignore, with tag None) a label; predictions held for it become suggestions or go, and
    pending suggestions of an earlier mapping to another tag follow the new one."""
    previous = TagMapping.objects.filter(source=source, external_tag=external_tag).first()
    mapping, _ = TagMapping.objects.update_or_create(
        source=source,
        external_tag=external_tag,
        defaults={"tag": tag, "confidence": confidence, "created_by": user, "automatic": False},
    )
    if previous is not None and previous.tag_id is not None and previous.tag_id != mapping.tag_id:
        remap_pending(previous, tag)
    entry = UnmappedTag.objects.filter(source=source, external_tag=external_tag).first()
    if entry is not None:
        if tag is not None:
            per_model: dict[MLModelVersion, dict[Image, dict[Tag, Candidate]]] = defaultdict(dict)
            for held in entry.predictions.select_related("image", "model_version"):
                candidate = Candidate(external_tag, entry.category, held.confidence * confidence)
                per_model[held.model_version][held.image] = {tag: candidate}
            for model, per_image in per_model.items():
                create_suggestions(model, per_image)
        entry.delete()
    return mapping


def remap_pending(previous: TagMapping, tag: Tag | None) -> None:
    """Pending suggestions of the old mapping's tag move to the new tag (aliases, implications and
    rejections applied again), or go when the label is now ignored; decided ones stay as decided."""
    pending = list(
        TagSuggestion.objects.filter(
            model_version__label_source=previous.source,
            external_tag=previous.external_tag,
            tag_id=previous.tag_id,
            status=TagSuggestion.Status.PENDING,
        ).select_related("image", "model_version")
    )
    TagSuggestion.objects.filter(pk__in=[s.pk for s in pending]).delete()
    if tag is None:
        return
    per_model: dict[MLModelVersion, dict[Image, dict[Tag, Candidate]]] = defaultdict(dict)
    for suggestion in pending:
        candidate = Candidate(suggestion.external_tag, suggestion.category, suggestion.confidence)
        per_model[suggestion.model_version][suggestion.image] = {tag: candidate}
    for model, per_image in per_model.items():
        create_suggestions(model, per_image)


WORKLIST_ACTIONS = ("map", "same_name", "ignore")


def resolve_worklist(entries: Iterable[UnmappedTag], action: str, tag_name: str = "", user=None) -> int:
    """Bulk decision on worklist entries: `map` to one tag, `same_name` tags, or `ignore`.

    Any other action is refused rather than read as `ignore`, which would drop every selected label.
    """
    if action not in WORKLIST_ACTIONS:
        raise ValueError(f"unknown action {action!r}: choose one of {', '.join(WORKLIST_ACTIONS)}")
    entries = list(entries)
    target = get_or_create_tags([tag_name])[tag_name] if action == "map" else None
    if action == "map" and target is None:
        raise ValueError("a tag name is needed to map to")
    for entry in entries:
        if action == "same_name":
            target = get_or_create_tags([entry.external_tag], category=entry.category)[entry.external_tag]
        set_mapping(entry.source, entry.external_tag, target if action != "ignore" else None, user)
    return len(entries)


def images_waiting() -> Coalesce:
    """An entry's images waiting, one lookup on the held predictions' unique index per entry: a list in another
    order counts the rows it shows alone, instead of grouping every held prediction."""
    held = HeldPrediction.objects.filter(unmapped=OuterRef("pk")).order_by().values("unmapped")
    return Coalesce(Subquery(held.annotate(images=Count("image", distinct=True)).values("images")), 0)


def label_sources() -> list[str]:
    """The label sources of the installed models (worklist entries are theirs), without a DISTINCT over entries."""
    sources = MLModelVersion.objects.order_by("label_source").values_list("label_source", flat=True)
    return list(dict.fromkeys(sources))


WORKLIST_ORDER = ("-waiting", "external_tag", "pk")


def worklist(source: str | None = None) -> QuerySet[UnmappedTag]:
    """Unmapped labels, the most predicted first, with how many images wait on each."""
    entries = UnmappedTag.objects.annotate(waiting=images_waiting())
    if source:
        entries = entries.filter(source=source)
    return entries.order_by(*WORKLIST_ORDER)


def worklist_key(entry: UnmappedTag) -> str:
    """A page link's position: the entry's whole sort key, so the link holds when the entry itself is resolved."""
    return f"{entry.waiting}:{entry.pk}:{entry.external_tag}"


def parse_worklist_key(value: str | None) -> tuple[int, int, str] | None:
    """(waiting, id, label) of a page link, or None for a missing or malformed one (the first page)."""
    parts = (value or "").split(":", 2)
    if len(parts) < 3:
        return None
    waiting, pk, label = page_key(parts[0]), page_key(parts[1]), parts[2]
    return None if waiting is None or pk is None or not label else (waiting, pk, label)


def worklist_page(
    entries: QuerySet[UnmappedTag], size: int, after: str | None = None, before: str | None = None
) -> KeysetPage:
    """A keyset page of `worklist()` past the `after` key (or before `before`): no OFFSET, links by sort key."""
    key, forward = parse_worklist_key(before), False
    if key is None:
        key, forward = parse_worklist_key(after), True
    if key is not None:
        waiting, pk, label = key
        more, ahead = ("lt", "gt") if forward else ("gt", "lt")
        entries = entries.filter(
            Q(**{f"waiting__{more}": waiting})
            | Q(waiting=waiting, **{f"external_tag__{ahead}": label})
            | Q(waiting=waiting, external_tag=label, **{f"pk__{ahead}": pk})
        )
    if not forward:
        entries = entries.reverse()
    rows = list(entries[: size + 1])
    items = rows[:size] if forward else rows[:size][::-1]
    more_rows = len(rows) > size
    return KeysetPage(
        items,
        next_after=worklist_key(items[-1]) if items and (more_rows or not forward) else None,
        previous_before=worklist_key(items[0]) if items and (key is not None if forward else more_rows) else None,
    )


MAPPING_COLUMNS = ("danbooru_tag", "internal_tag_title", "action")
MAPPING_ACTIONS = ("map", "ignore")


class MappingImportError(ValueError):
    """A mapping CSV that cannot be read, or is not `danbooru_tag,internal_tag_title,action`: nothing imported."""


def read_mapping_rows(path: str | Path) -> list[tuple[str, str, str]]:
    """(label, internal tag title, action) per row, comments left out. All checked before anything is
    written: a wrong header would import nothing and say "0 created", a misspelt action would read as ignore."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = [column for column in MAPPING_COLUMNS if column not in (reader.fieldnames or [])]
            if missing:
                raise MappingImportError(
                    f"{path} has no {', '.join(missing)} column: the header must be {','.join(MAPPING_COLUMNS)}"
                )
            rows = [tuple((row[column] or "").strip() for column in MAPPING_COLUMNS) for row in reader]
    except UnicodeDecodeError as exc:
        raise MappingImportError(f"{path} is not UTF-8 text: {exc}") from exc
    except (OSError, csv.Error) as exc:
        raise MappingImportError(f"cannot read {path}: {exc}") from exc
    rows = [
        (external, title, action.lower() or "map")
        for external, title, action in rows
        if external and not external.startswith("#")
    ]
    unknown = sorted({action for _, _, action in rows} - set(MAPPING_ACTIONS))
    if unknown:
        raise MappingImportError(f"{path}: unknown action {', '.join(map(repr, unknown))} (map or ignore)")
    return rows


def import_tag_mappings(
    path: str | Path, source: str = "danbooru", user=None, *, replace: bool = False
) -> dict[str, list[str]]:
    """Seed 002's CSV `danbooru_tag,internal_tag_title,action` (map|ignore).

    A label already mapped is skipped, or with `replace` updated (a same-name mapping a tagging run
    made on its own is the usual one to fix). Lists: created, replaced, unchanged, skipped, missing,
    and `automatic`: the replaced or skipped labels whose mapping a tagging run had made.
    """
    result: dict[str, list[str]] = {
        key: [] for key in ("created", "replaced", "unchanged", "skipped", "missing", "automatic")
    }
    for external, title, action in read_mapping_rows(path):
        existing = TagMapping.objects.filter(source=source, external_tag=external).first()
        if existing is not None and not replace:
            result["skipped"].append(external)
            result["automatic"] += [external] if existing.automatic else []
            continue
        tag = None
        if action == "map":
            name = resolve_names([title]).get(title) if title else None
            tag = Tag.objects.filter(name=name).first() if name else None
            if tag is None:
                result["missing"].append(f"{external} -> {title or '(no title)'}")
                continue
        if existing is not None and existing.tag_id == (tag.pk if tag else None) and not existing.automatic:
            result["unchanged"].append(external)
            continue
        set_mapping(source, external, tag, user)
        result["created" if existing is None else "replaced"].append(external)
        result["automatic"] += [external] if existing is not None and existing.automatic else []
    return result
