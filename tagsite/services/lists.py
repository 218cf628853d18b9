"""Long lists at scale: capped counts and keyset pages, so no request counts or skips a million rows."""

import bisect
import hashlib
import operator
from dataclasses import dataclass
from urllib.parse import urlencode

from django.core.cache import caches
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import QuerySet
from django.utils.functional import cached_property

COUNT_CAP = 1000
# An image's columns no list shows (texts, JSON, file bookkeeping): deferred wherever a list selects images.
IMAGE_LIST_DEFER = (
    "mtime", "orientation", "frames", "rating", "error", "metadata_fingerprint", "metadata_written_at",
    "metadata_fallback", "sidecars", "title", "caption", "description", "updated_at",
)  # fmt: skip


def related_defer(relation: str, fields: tuple[str, ...]) -> tuple[str, ...]:
    """`defer()` entries for the columns `fields` of a select_related relation."""
    return tuple(f"{relation}__{name}" for name in fields)


def capped_count(queryset: QuerySet, cap: int = COUNT_CAP) -> tuple[int, bool]:
    """(count, capped): counting stops after `cap` rows, so a filter matching 800k rows costs as much as 1k."""
    count = queryset.order_by()[: cap + 1].count()
    return min(count, cap), count > cap


SEARCH_COUNT_SECONDS = 60
PAGE_POSITION = ("after", "before", "cursor")  # query parameters that move through a list, not filter it


def search_count(queryset: QuerySet, request) -> tuple[int, bool]:
    """`capped_count` of an image search, kept for a minute under the request's filters: the next page of the
    same search, or the same search again, counts nothing. Under the cap every match is counted: three popular
    tags with 512 images in common are 56k index entries, 5-8 ms of database time a page. (Danbooru keeps its
    search counts in a cache the same way.) The rows are always read fresh; the count may be a minute old."""
    params = sorted((key, value) for key, values in request.GET.lists() if key not in PAGE_POSITION for value in values)
    key = "search-count:" + hashlib.sha256(f"{request.path}?{urlencode(params)}".encode()).hexdigest()
    counted = caches["counts"].get(key)
    if counted is None:
        counted = capped_count(queryset)
        caches["counts"].set(key, counted, SEARCH_COUNT_SECONDS)
    return counted


def count_label(count: int, capped: bool) -> str:
    """`1,000+` for a capped count."""
    return f"{count:,}{'+' if capped else ''}"


@dataclass
class KeysetPage:
    """One page of a list ordered by id, newest first, with links by id (`after`/`before`) instead of OFFSET."""

    items: list
    next_after: int | None = None
    previous_before: int | None = None

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def has_other_pages(self) -> bool:
        return self.next_after is not None or self.previous_before is not None


def keyset_page(
    queryset: QuerySet,
    size: int,
    after: int | None = None,
    before: int | None = None,
    *,
    oldest_first: bool = False,
    key: str = "pk",
) -> KeysetPage:
    """The page of `size` rows (highest id first, lowest with `oldest_first`) past `after`, or before `before`,
    or the first one.

    The query reads `size + 1` rows through the primary key however deep the page is. Another `key` pages that
    column's distinct values instead of model objects: the image ids of matching suggestions, read from the
    suggestions' own (status, image) index rather than by walking images that have none.
    """
    ahead, behind = (f"{key}__gt", f"{key}__lt") if oldest_first else (f"{key}__lt", f"{key}__gt")
    forward, backward = (key, f"-{key}") if oldest_first else (f"-{key}", key)
    if key == "pk":
        value = operator.attrgetter("pk")
    else:
        queryset, value = queryset.values_list(key, flat=True).distinct(), lambda item: item
    if before is not None:
        rows = list(queryset.filter(**{behind: before}).order_by(backward)[: size + 1])
        more_before = len(rows) > size
        items = rows[:size][::-1]
        return KeysetPage(
            items,
            next_after=value(items[-1]) if items else None,
            previous_before=value(items[0]) if items and more_before else None,
        )
    if after is not None:
        queryset = queryset.filter(**{ahead: after})
    rows = list(queryset.order_by(forward)[: size + 1])
    items = rows[:size]
    return KeysetPage(
        items,
        next_after=value(items[-1]) if len(rows) > size else None,
        previous_before=value(items[0]) if items and after is not None else None,
    )


TAG_ORDER = ("-usage_count", "name")  # most used first: the index `tag_usage_order` (name is unique: a total order)


def tag_keyset_page(tags: QuerySet, size: int, after: int | None = None, before: int | None = None) -> KeysetPage:
    """The page of `size` tags, most used first, that follows the tag `after`, or precedes the tag `before`, or
    the first page; links by tag id, never an OFFSET. `tags` may be model objects or `values()` rows.

    68k of 140k tags share a usage count of 0: a single `usage_count < u OR (usage_count = u AND name > n)` walks
    every tag of the anchor's count before it. Two index ranges instead (the rest of the anchor's count by name,
    then the lower counts), at most `size + 1` rows each, in one UNION ALL: a page 60,000 tags deep reads what
    the first page reads.
    """
    ident = lambda row: row["id"] if isinstance(row, dict) else row.pk  # noqa: E731
    tags = tags.order_by(*TAG_ORDER)
    anchor_id = before if before is not None else after
    anchor = tags.model.objects.filter(pk=anchor_id).values_list("usage_count", "name").first() if anchor_id else None
    if anchor is None:
        rows = list(tags[: size + 1])
        return KeysetPage(rows[:size], next_after=ident(rows[size - 1]) if len(rows) > size else None)
    usage, name = anchor
    if before is None:
        same = tags.filter(usage_count=usage, name__gt=name).order_by("name")
        rest = tags.filter(usage_count__lt=usage)
        rows = list(same[: size + 1].union(rest[: size + 1], all=True).order_by(*TAG_ORDER)[: size + 1])
        items = rows[:size]
        return KeysetPage(
            items,
            next_after=ident(items[-1]) if len(rows) > size else None,
            previous_before=ident(items[0]) if items else None,
        )
    same = tags.filter(usage_count=usage, name__lt=name).order_by("-name")
    rest = tags.filter(usage_count__gt=usage).order_by("usage_count", "-name")
    rows = list(same[: size + 1].union(rest[: size + 1], all=True).order_by("usage_count", "-name")[: size + 1])
    if not rows:  # the tags before it have left the filter since: the first page
        return tag_keyset_page(tags, size)
    items = rows[:size][::-1]
    return KeysetPage(
        items,
        next_after=ident(items[-1]) if items else None,
        previous_before=ident(items[0]) if len(rows) > size else None,
    )


def keyset_slice(values: list[int], size: int, after: int | None = None, before: int | None = None) -> KeysetPage:
    """keyset_page's page, oldest first, of ascending values already read: a filter matching fewer than COUNT_CAP
    rows lists them once (the planner, expecting them spread evenly, would walk an index in order to find a rare
    value's few rows at its end), and its page and links come from that list."""
    if before is not None:
        end = bisect.bisect_left(values, before)
        items = values[max(end - size, 0) : end]
        return KeysetPage(
            items,
            next_after=items[-1] if items else None,
            previous_before=items[0] if items and end > size else None,
        )
    start = bisect.bisect_right(values, after) if after is not None else 0
    items = values[start : start + size]
    return KeysetPage(
        items,
        next_after=items[-1] if start + size < len(values) else None,
        previous_before=items[0] if items and after is not None else None,
    )


def page_key(value: str | None) -> int | None:
    """A page link's id, or None for a missing or malformed one (the first page, never a 500)."""
    return int(value) if value and value.isdigit() and len(value) < 19 else None


class CappedPaginator(Paginator):
    """Django's paginator (admin's) counting at most `cap` rows: pages past the cap are not offered."""

    cap = COUNT_CAP

    @cached_property
    def _capped_count(self) -> tuple[int, bool]:
        return capped_count(self.object_list, self.cap)

    @property
    def count(self) -> int:
        return self._capped_count[0]

    @property
    def capped(self) -> bool:
        """Whether the list has more rows than `count`."""
        return self._capped_count[1]


def tag_ids_by_prefix(term: str, limit: int = 200) -> list[int]:
    """Ids of the most used tags whose name, or an alias of which, starts with the (normalised) term.

    Searches over millions of rows filter by these ids instead of joining tags and matching text per row.
    """
    from tagsite.models import Tag, TagAlias
    from tagsite.services.tags import normalize_tag_name

    name = normalize_tag_name(term)
    if not name:
        return []
    direct = Tag.objects.filter(name__startswith=name).order_by("-usage_count", "name")
    ids = list(direct.values_list("pk", flat=True)[:limit])
    aliased = TagAlias.objects.filter(antecedent__startswith=name).values_list("tag_id", flat=True)[:limit]
    return list(dict.fromkeys([*ids, *aliased]))[:limit]


def image_ids_by_path(term: str, limit: int = COUNT_CAP) -> list[int]:
    """Ids of (at most `limit`) images whose path contains `term`: searches over rows about images filter by these
    instead of matching the joined path of every row."""
    from tagsite.models import Image

    return list(Image.objects.filter(path__contains=term).values_list("pk", flat=True)[:limit])


def tag_names_by_image(image_ids: list[int], per_image: int) -> dict[int, list[tuple[str, str]]]:
    """(name, display name) of each image's first `per_image` tags, in the order they were added (library tiles).

    One query of plain tuples for a whole page: no model objects (two per tag) are built, which was most of a
    list page's CPU. In SQL, because the links are ranked before any tag is read: the ORM's window filter wraps
    the join, looking up every tag of 48 images to keep 8 of each (48 tiles: 2.5 ms of Python and 3 ms of the
    database's CPU, 0.5 and 1.3 this way).
    """
    from tagsite.models import ImageTag, Tag

    quote = connection.ops.quote_name
    sql = (
        f"SELECT l.image_id, t.name, t.display_name FROM (SELECT image_id, tag_id, id, "  # noqa: S608 - models' tables
        f"row_number() OVER (PARTITION BY image_id ORDER BY id) AS rank FROM {quote(ImageTag._meta.db_table)} "
        f"WHERE image_id = ANY(%s)) l JOIN {quote(Tag._meta.db_table)} t ON t.id = l.tag_id WHERE l.rank <= %s "
        "ORDER BY l.image_id, l.id"
    )
    names: dict[int, list[tuple[str, str]]] = {pk: [] for pk in image_ids}
    with connection.cursor() as cursor:
        cursor.execute(sql, [list(image_ids), per_image])
        for image_id, name, display in cursor.fetchall():
            names[image_id].append((name, display))
    return names
