"""API pagination at scale: no list counts more than it shows by much, none skips a million rows."""

from rest_framework.pagination import CursorPagination, PageNumberPagination
from rest_framework.response import Response

from tagsite.services.lists import CappedPaginator, capped_count

COUNTS = {"count": {"type": "integer", "example": 123}, "count_capped": {"type": "boolean"}}


class CappedPageNumberPagination(PageNumberPagination):
    """The default: page numbers, with a count that stops at 1,000 rows (`count_capped` says when it did),
    so page 1 of a million-row list does not count a million rows."""

    django_paginator_class = CappedPaginator

    def get_paginated_response(self, data):
        paginator = self.page.paginator
        return Response(
            {
                "count": paginator.count,
                "count_capped": paginator.capped,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema):
        schema = super().get_paginated_response_schema(schema)
        schema["properties"] = {**COUNTS, **{k: v for k, v in schema["properties"].items() if k != "count"}}
        return schema


class CappedCursorPagination(CursorPagination):
    """Newest first by id with `?cursor=` links (a keyset, never OFFSET), and a `count` that stops at 1,000
    (`count_capped` says when it did), for lists people page deep into."""

    ordering = "-id"

    def paginate_queryset(self, queryset, request, view=None):
        self.count, self.count_capped = capped_count(queryset)
        return super().paginate_queryset(queryset, request, view)

    def get_paginated_response(self, data):
        links = {"next": self.get_next_link(), "previous": self.get_previous_link()}
        return Response({"count": self.count, "count_capped": self.count_capped, **links, "results": data})

    def get_paginated_response_schema(self, schema):
        schema = super().get_paginated_response_schema(schema)
        schema["properties"] = {**COUNTS, **schema["properties"]}
        return schema
