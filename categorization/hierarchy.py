"""Extended categories as the parents of tags in files' hierarchical keywords (`Body Hair|long hair`)."""

from collections.abc import Iterable

from categorization.models import TagCategory


def category_names(tag_ids: Iterable[int]) -> dict[int, str]:
    """Tag id -> its extended category's name; uncategorised tags are left out."""
    return dict(TagCategory.objects.filter(tag_id__in=list(tag_ids)).values_list("tag_id", "category__name"))
