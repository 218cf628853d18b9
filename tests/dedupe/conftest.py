import csv
from pathlib import Path

import pytest
from django.contrib.auth.models import User

from dedupe import services
from dedupe.models import EmbeddingSpace
from tagsite.ai.local_embeddings import LocalMiniLM
from tagsite.models import Tag
from tagsite.services.accounts import ensure_moderators_group
from tagsite.services.tags import display_name_for, normalize_tag_name

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "danbooru_tags_sample.csv"


def sample_rows(limit: int | None = None) -> list[tuple[str, int, int, list[str]]]:
    """(name, category, posts, aliases) of the sample's most used tags."""
    with SAMPLE.open(newline="", encoding="utf-8") as handle:
        rows = [(n, int(c), int(p), [a for a in aliases.split(",") if a]) for n, c, p, aliases in csv.reader(handle)]
    return rows[:limit] if limit else rows


def make_tags(*names: str, category: int = 0, usage: int = 0) -> list[Tag]:
    tags = [
        Tag(name=normalize_tag_name(n), display_name=display_name_for(n), danbooru_category=category, usage_count=usage)
        for n in names
    ]
    Tag.objects.bulk_create(tags, ignore_conflicts=True)
    found = {t.name: t for t in Tag.objects.filter(name__in=[t.name for t in tags])}
    return [found[t.name] for t in tags]  # in the order given


@pytest.fixture
def space(db) -> EmbeddingSpace:
    """The local MiniLM model's space, active."""
    return services.space_for(LocalMiniLM(), activate=True)


def embed_all(space: EmbeddingSpace) -> None:
    services.embed_tags(LocalMiniLM(), space)


def login(client, username: str = "mod", *, moderator: bool = True) -> User:
    user = User.objects.create_user(username, password="pw-long-enough", is_staff=True)
    if moderator:
        user.groups.add(ensure_moderators_group())
    client.force_login(user)
    return user
