"""API pagination at scale: no list counts more than it shows by much, none skips a million rows."""

from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.response import Response

from tagsite.services.lists import TAG_ORDER, capped_count, page_key, search_count, tag_keyset_page

COUNTS = {"count": {"type": "integer", "example": 123}, "count_capped": {"type": "boolean"}}


class CappedCursorPagination(CursorPagination):
    """The default: newest first by id with `?cursor=` links (a keyset, never OFFSET: every row reachable), and a
    `count` that stops at 1,000 (`count_capped` says when it did)."""

    ordering = "-id"

    def paginate_queryset(self, queryset, request, view=None):
        self.count, self.count_capped = self.counted(queryset, request)
        return super().paginate_queryset(queryset, request, view)

    def counted(self, queryset, request) -> tuple[int, bool]:
        return capped_count(queryset)

    def get_paginated_response(self, data):
        links = {"next": self.get_next_link(), "previous": self.get_previous_link()}
        return Response({"count": self.count, "count_capped": self.count_capped, **links, "results": data})

    def get_paginated_response_schema(self, schema):
        schema = super().get_paginated_response_schema(schema)
        schema["properties"] = {**COUNTS, **schema["properties"]}
        return schema


class SearchCursorPagination(CappedCursorPagination):
    """Image searches: a search's count is kept for a minute (`lists.search_count`), so paging through it counts
    once."""

    def counted(self, queryset, request) -> tuple[int, bool]:
        return search_count(queryset, request)


class TagCursorPagination(CappedCursorPagination):
    """Tags most used first in keyset pages (`lists.tag_keyset_page`): a `?cursor=` names a tag, and a page among
    the 68k tags used 0 times reads what the first page reads. DRF's own cursor filters on the first field of
    the order alone, the usage count, and steps through the tags that share it by OFFSET."""

    ordering = TAG_ORDER

    def paginate_queryset(self, queryset, request, view=None):
        self.request, self.base_url = request, request.build_absolute_uri()
        self.count, self.count_capped = capped_count(queryset)
        cursor = self.decode_cursor(request)
        key = page_key(cursor.position) if cursor else None
        backwards = bool(cursor and cursor.reverse)
        self.keyset = tag_keyset_page(
            queryset, self.get_page_size(request), after=None if backwards else key, before=key if backwards else None
        )
        self.display_page_controls = self.keyset.has_other_pages
        return self.keyset.items

    def get_next_link(self):
        after = self.keyset.next_after
        return None if after is None else self.encode_cursor(Cursor(offset=0, reverse=False, position=str(after)))

    def get_previous_link(self):
        before = self.keyset.previous_before
        return None if before is None else self.encode_cursor(Cursor(offset=0, reverse=True, position=str(before)))
