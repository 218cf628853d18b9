"""Tag names, aliases, implications and tagging images, with Danbooru's rules."""

import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from django.conf import settings
from django.contrib.postgres.search import SearchQuery
from django.db import connection, transaction
from django.db.models import (
    BooleanField,
    Count,
    Exists,
    Expression,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    UniqueConstraint,
)
from django.db.models.functions import Coalesce

from tagsite.models import TEXT_SEARCH_VECTOR, Image, ImageTag, Tag, TagAlias, TagImplication

MAX_NAME_LENGTH = 255
_SEPARATORS = re.compile(r"[\s_\-]+")
_SPACES = re.compile(r"\s+")
_SURROUNDING = "\"'`“”‘’«»,.;:!?*•·"


class TagRuleError(ValueError):
    """An alias or implication that Danbooru's rules forbid (a cycle, a self-reference)."""


def normalize_tag_name(raw: str) -> str:
    """The canonical key of a tag name.

    NFKC, lower case, runs of spaces/underscores/hyphens become one underscore, surrounding
    quotes and punctuation go. Names without two letters or digits are kaomoji or symbols
    (`^_^`, `0_0`, `:d`, `-_-`) and keep their punctuation; only their spaces become underscores.
    """
    text = _SPACES.sub(" ", unicodedata.normalize("NFKC", raw)).strip().lower()
    core = text.strip(_SURROUNDING + " ")
    if sum(ch.isalnum() for ch in core) < 2 or sum(ch.isalnum() for ch in text) < 2:
        return text.replace(" ", "_")
    return _SEPARATORS.sub("_", core).strip("_")


def display_name_for(raw: str) -> str:
    """How a tag reads to people: the original spelling with underscores as spaces (kaomoji untouched)."""
    text = _SPACES.sub(" ", unicodedata.normalize("NFKC", raw)).strip()
    name = normalize_tag_name(raw)
    if len(name) <= 3 or not any(ch.isalpha() for ch in name):
        return text  # kaomoji and short symbols (`o_o`, `0_0`) read as written
    return text.strip(_SURROUNDING + " ").replace("_", " ")


def resolve_names(raw_names: Iterable[str]) -> dict[str, str]:
    """Map each raw name to its canonical tag name: normalised, then rewritten by an alias if one exists.

    Empty names, names with NUL bytes and names over 255 characters (junk in a file's keywords,
    usually) are left out rather than failing a whole batch.
    """
    normalized = {raw: normalize_tag_name(raw) for raw in raw_names if "\x00" not in raw}
    normalized = {raw: name for raw, name in normalized.items() if 0 < len(name) <= MAX_NAME_LENGTH}
    aliases = dict(
        TagAlias.objects.filter(antecedent__in=set(normalized.values())).values_list("antecedent", "tag__name")
    )
    return {raw: aliases.get(name, name) for raw, name in normalized.items()}


def get_or_create_tags(raw_names: Iterable[str], category: int | None = None) -> dict[str, Tag]:
    """The tags for these names (aliases applied), created where missing. Keyed by raw name."""
    resolved = resolve_names(raw_names)
    wanted: dict[str, str] = {}
    for raw, name in resolved.items():
        wanted.setdefault(name, raw)
    existing = {tag.name: tag for tag in Tag.objects.filter(name__in=wanted)}
    missing = [
        Tag(name=name, display_name=display_name_for(raw)[:255], danbooru_category=category or 0)
        for name, raw in wanted.items()
        if name not in existing
    ]
    if missing:
        Tag.objects.bulk_create(missing, ignore_conflicts=True)
        existing.update({tag.name: tag for tag in Tag.objects.filter(name__in=[t.name for t in missing])})
    return {raw: existing[name] for raw, name in resolved.items()}


def implication_edges(tag_ids: Iterable[int]) -> dict[int, list[int]]:
    """antecedent -> consequents for everything reachable from these tags (one query per level)."""
    edges: dict[int, list[int]] = defaultdict(list)
    frontier = set(tag_ids)
    seen = set(frontier)
    while frontier:
        rows = TagImplication.objects.filter(antecedent_id__in=frontier).values_list("antecedent_id", "consequent_id")
        frontier = set()
        for antecedent, consequent in rows:
            edges[antecedent].append(consequent)
            if consequent not in seen:
                seen.add(consequent)
                frontier.add(consequent)
    return edges


def closure_ids(tag_ids: Iterable[int], edges: dict[int, list[int]]) -> set[int]:
    """The tags plus everything they imply, transitively, over edges from `implication_edges`."""
    found = set(tag_ids)
    frontier = list(found)
    while frontier:
        for consequent in edges.get(frontier.pop(), ()):
            if consequent not in found:
                found.add(consequent)
                frontier.append(consequent)
    return found


def implied_closure(tags: Iterable[Tag]) -> set[Tag]:
    """The tags plus everything they imply, transitively."""
    found = {tag.pk: tag for tag in tags}
    implied = closure_ids(found, implication_edges(found)) - set(found)
    return {*found.values(), *Tag.objects.filter(pk__in=implied)}


def add_tags(
    images: Iterable[Image],
    raw_names: Iterable[str],
    *,
    source: str = ImageTag.Source.MANUAL,
    user=None,
    model_name: str = "",
) -> list[Tag]:
    """Tag images with these names: aliases rewrite them, implied tags come along. Idempotent."""
    tags = set(get_or_create_tags(raw_names).values())
    tag_images([Tagging(image.pk, tag.pk, model_name) for image in images for tag in tags], source=source, user=user)
    return sorted(implied_closure(tags), key=lambda tag: tag.name)


@dataclass(frozen=True)
class Tagging:
    """One tag going onto one image (and who suggested it, for provenance)."""

    image_id: int
    tag_id: int
    model_name: str = ""


def tag_images(taggings: Iterable[Tagging], *, source: str, user=None) -> int:
    """Put tags and what they imply on images: implications resolved once for the batch, one INSERT for every
    row, usage counts moved by the rows really added. Returns how many rows were added."""
    taggings = list(taggings)
    edges = implication_edges({t.tag_id for t in taggings})
    rows: dict[tuple[int, int], tuple[str, str]] = {}
    for t in taggings:  # implied first, so a tag that is both given and implied keeps the given source
        for implied in closure_ids([t.tag_id], edges) - {t.tag_id}:
            rows.setdefault((t.image_id, implied), (ImageTag.Source.IMPLIED, t.model_name))
    for t in taggings:
        rows[(t.image_id, t.tag_id)] = (source, t.model_name)
    if not rows:
        return 0
    keys = sorted(rows, key=lambda key: (key[1], key[0]))  # one order everywhere: waits on the unique index never cycle
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tagsite_imagetag (image_id, tag_id, source, model_name, added_by_id, created_at) "
            "SELECT image_id, tag_id, source, model_name, %s, now() "
            "FROM unnest(%s::bigint[], %s::bigint[], %s::text[], %s::text[]) "
            "AS r(image_id, tag_id, source, model_name) ORDER BY tag_id, image_id "
            # a tag the image has only as implied becomes a given one (so taking it back later removes it)
            "ON CONFLICT (image_id, tag_id) DO UPDATE SET source = EXCLUDED.source, model_name = EXCLUDED.model_name, "
            "added_by_id = EXCLUDED.added_by_id WHERE tagsite_imagetag.source = 'implied' AND EXCLUDED.source <> "
            "'implied' RETURNING tag_id, xmax = 0",
            [
                getattr(user, "pk", None),
                [image for image, _ in keys],
                [tag for _, tag in keys],
                [rows[key][0] for key in keys],
                [rows[key][1] for key in keys],
            ],
        )
        added = [tag for tag, inserted in cursor.fetchall() if inserted]  # xmax = 0: a new row, not an upgrade
    shift_usage_counts(Counter(added))
    return len(added)


def untag_images(removals: Iterable[tuple[int, int]], *, keep: dict[int, set[int]] | None = None) -> int:
    """Take back tags an approval put on images (source `model`) and the implied tags that came with them,
    unless a tag the image still has implies them, or `keep` (image -> tag ids, e.g. other approvals) keeps them.
    Tags the image had anyway (manual, from the file) stay. Returns how many rows were removed."""
    removals = set(removals)
    keep = keep or {}
    by_image: dict[int, set[int]] = defaultdict(set)
    for image_id, tag_id in removals:
        by_image[image_id].add(tag_id)
    current: dict[int, dict[int, str]] = defaultdict(dict)
    for image_id, tag_id, source in ImageTag.objects.filter(image_id__in=by_image).values_list(
        "image_id", "tag_id", "source"
    ):
        current[image_id][tag_id] = source
    remaining: dict[int, set[int]] = {}
    for image_id, taken in by_image.items():
        tags = current[image_id]
        remaining[image_id] = {
            tag
            for tag, source in tags.items()
            if source != ImageTag.Source.IMPLIED and not (tag in taken and source == ImageTag.Source.MODEL)
        } | keep.get(image_id, set())
    edges = implication_edges({tag for tags in (*by_image.values(), *remaining.values()) for tag in tags})
    doomed, demoted = [], []
    for image_id, taken in by_image.items():
        tags, kept = current[image_id], closure_ids(remaining[image_id], edges)
        for tag in closure_ids(taken, edges):
            source = tags.get(tag)
            # taken back: the approval's own tag, or a tag it left implied (rows from before approvals upgraded them)
            given = tag in taken and source in (ImageTag.Source.MODEL, ImageTag.Source.IMPLIED)
            if tag in remaining[image_id] or not (given or source == ImageTag.Source.IMPLIED):
                continue  # kept as it is (by `keep`), or not something the approval added
            if tag not in kept:
                doomed.append((image_id, tag))
            elif source == ImageTag.Source.MODEL:
                demoted.append((image_id, tag))  # implied by what remains (an implication added since)
    if demoted:
        _update_pairs(
            demoted,
            "UPDATE tagsite_imagetag SET source = 'implied' FROM {pairs} "
            "WHERE tagsite_imagetag.image_id = p.image_id AND tagsite_imagetag.tag_id = p.tag_id",
        )
    if not doomed:
        return 0
    removed = _update_pairs(
        doomed,
        "DELETE FROM tagsite_imagetag USING {pairs} WHERE tagsite_imagetag.image_id = p.image_id "
        "AND tagsite_imagetag.tag_id = p.tag_id RETURNING tagsite_imagetag.tag_id",
    )
    shift_usage_counts({tag: -n for tag, n in Counter(removed).items()})
    return len(removed)


def _update_pairs(pairs: list[tuple[int, int]], sql: str) -> list[int]:
    """Run an UPDATE/DELETE joined to (image_id, tag_id) pairs; the tag ids RETURNING gave, if any."""
    with connection.cursor() as cursor:
        cursor.execute(
            sql.format(pairs="unnest(%s::bigint[], %s::bigint[]) AS p(image_id, tag_id)"),
            [[image for image, _ in pairs], [tag for _, tag in pairs]],
        )
        return [tag for (tag,) in cursor.fetchall()] if cursor.description else []


_held_usage_shifts: ContextVar[Counter | None] = ContextVar("held_usage_shifts", default=None)


@contextmanager
def usage_counts_last() -> Iterator[None]:
    """Inside the block, usage counts move once, at its end: the last statement before a decision's commit.

    Every approval of a popular tag (1girl in one batch of two) locks that tag's row until the commit, so
    concurrent batches queue on it: moved last, the row is held for the commit alone, not for the audit rows
    and the other writes that follow."""
    held = Counter()
    token = _held_usage_shifts.set(held)
    try:
        yield
    finally:
        _held_usage_shifts.reset(token)
    shift_usage_counts(held)


def shift_usage_counts(deltas: dict[int, int]) -> None:
    """Move usage counts by what a batch added (+) or removed (-), never by a recount: the tags are locked
    in id order first, so batches that share popular tags wait for each other instead of deadlocking. Inside
    `usage_counts_last` the move waits for the block's end."""
    held = _held_usage_shifts.get()
    if held is not None:
        held.update(deltas)
        return
    ids = sorted(tag for tag, delta in deltas.items() if delta)
    if not ids:
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT id FROM tagsite_tag WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE", [ids])
        cursor.execute(
            "UPDATE tagsite_tag SET usage_count = GREATEST(0, usage_count + d.delta) "
            "FROM unnest(%s::bigint[], %s::int[]) AS d(id, delta) WHERE tagsite_tag.id = d.id",
            [ids, [deltas[tag] for tag in ids]],
        )


def remove_tags(images: Iterable[Image], tags: Iterable[Tag]) -> int:
    tag_ids = [tag.pk for tag in tags]
    deleted, _ = ImageTag.objects.filter(image__in=list(images), tag_id__in=tag_ids).delete()
    refresh_usage_counts(tag_ids)
    return deleted


def refresh_usage_counts(tag_ids: Iterable[int] | None = None) -> None:
    """Recount how many images carry each tag (all tags when no ids are given)."""
    count = ImageTag.objects.filter(tag=OuterRef("pk")).order_by().values("tag").annotate(n=Count("*")).values("n")[:1]
    queryset = Tag.objects.all() if tag_ids is None else Tag.objects.filter(pk__in=list(tag_ids))
    queryset.update(usage_count=Coalesce(Subquery(count), 0))


@transaction.atomic
def create_alias(antecedent_raw: str, target_raw: str, user=None) -> TagAlias:
    """Make `antecedent` an alias of `target`, Danbooru style.

    The target is followed to its own alias target (no chains); aliases that pointed at the
    antecedent are re-pointed; an existing antecedent tag is merged into the target (its images,
    implications and aliases move over); a cycle is rejected.
    """
    antecedent = normalize_tag_name(antecedent_raw)
    target_name = resolve_names([target_raw]).get(target_raw, "")
    if not 0 < len(antecedent) <= MAX_NAME_LENGTH or not target_name:
        raise TagRuleError(f"Both names must have 1 to {MAX_NAME_LENGTH} characters.")
    if antecedent == target_name:
        raise TagRuleError(f"Alias {antecedent} -> {target_name} would be a cycle.")
    target = get_or_create_tags([target_name])[target_name]
    TagAlias.objects.filter(tag__name=antecedent).update(tag=target)
    old = Tag.objects.filter(name=antecedent).first()
    if old is not None:
        merge_tags(old, target)
    alias, _ = TagAlias.objects.update_or_create(antecedent=antecedent, defaults={"tag": target, "created_by": user})
    return alias


def merge_tags(old: Tag, target: Tag) -> dict[str, int]:
    """Move everything of `old` onto `target`, then delete `old`.

    Image links move in one INSERT ... SELECT (an image that has both keeps one link, a given source winning
    over implied). Other apps' rows that point at the tag (mappings, suggestions with their review audit,
    category proposals, embeddings) move in one UPDATE per relation; a row that would duplicate one the
    target already has under a unique constraint is deleted, and counted. Returns those counts per model.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO tagsite_imagetag (image_id, tag_id, source, model_name, added_by_id, created_at) "
            "SELECT image_id, %s, source, model_name, added_by_id, created_at FROM tagsite_imagetag "
            "WHERE tag_id = %s ORDER BY image_id "
            "ON CONFLICT (image_id, tag_id) DO UPDATE SET source = EXCLUDED.source, model_name = EXCLUDED.model_name, "
            "added_by_id = EXCLUDED.added_by_id WHERE tagsite_imagetag.source = 'implied' "
            "AND EXCLUDED.source <> 'implied'",
            [target.pk, old.pk],
        )
    for implication in TagImplication.objects.filter(antecedent=old).exclude(consequent=target):
        TagImplication.objects.get_or_create(antecedent=target, consequent=implication.consequent)
    for implication in TagImplication.objects.filter(consequent=old).exclude(antecedent=target):
        TagImplication.objects.get_or_create(antecedent=implication.antecedent, consequent=target)
    TagAlias.objects.filter(tag=old).update(tag=target)
    dropped = _repoint_references(old, target)
    old.delete()
    refresh_usage_counts([target.pk])
    return dropped


def _repoint_references(old: Tag, target: Tag) -> dict[str, int]:
    """One UPDATE per relation to Tag: rows that would break one of their model's unique constraints (the
    target already has the equivalent row) stay behind and are deleted, counted per model, never skipped."""
    handled = {ImageTag, TagAlias, TagImplication}
    dropped: dict[str, int] = {}
    for relation in Tag._meta.related_objects:
        if not relation.one_to_many and not relation.one_to_one or relation.related_model in handled:
            continue
        model, field = relation.related_model, relation.field.name
        rows = model._base_manager.filter(**{field: old})
        for conflict in _unique_conflicts(model, field, target):
            rows = rows.exclude(conflict)
        rows.update(**{field: target})
        leftover, _ = model._base_manager.filter(**{field: old}).delete()
        if leftover:
            dropped[model._meta.label] = leftover
    return dropped


def _unique_conflicts(model, field: str, target: Tag) -> list[Q]:
    """For each unique constraint of `model` that includes `field`: rows that would collide with a row the
    target already has (same other fields, both inside the constraint's condition)."""
    found = []
    uniques = [((field,), None)] if model._meta.get_field(field).unique else []
    uniques += [
        (tuple(c.fields), c.condition)
        for c in model._meta.constraints
        if isinstance(c, UniqueConstraint) and field in c.fields
    ]
    uniques += [(tuple(fields), None) for fields in model._meta.unique_together if field in fields]
    for fields, condition in uniques:
        twin = model._base_manager.filter(**{field: target}, **{f: OuterRef(f) for f in fields if f != field})
        if condition is not None:
            twin = twin.filter(condition)
            found.append(condition & Q(Exists(twin)))
        else:
            found.append(Q(Exists(twin)))
    return found


@transaction.atomic
def create_implication(antecedent_raw: str, consequent_raw: str, user=None) -> TagImplication:
    """`antecedent` implies `consequent`; images already tagged get the implied tag now."""
    tags = get_or_create_tags([antecedent_raw, consequent_raw])
    if antecedent_raw not in tags or consequent_raw not in tags:
        raise TagRuleError(f"Tag names must have 1 to {MAX_NAME_LENGTH} characters.")
    antecedent, consequent = tags[antecedent_raw], tags[consequent_raw]
    if antecedent == consequent:
        raise TagRuleError(f"{antecedent.name} cannot imply itself.")
    if antecedent in implied_closure([consequent]):
        raise TagRuleError(f"{antecedent.name} => {consequent.name} would make a cycle.")
    implication, _ = TagImplication.objects.get_or_create(
        antecedent=antecedent, consequent=consequent, defaults={"created_by": user}
    )
    tagged = Image.objects.filter(image_tags__tag=antecedent)
    implied = implied_closure([consequent])
    ImageTag.objects.bulk_create(
        [ImageTag(image=image, tag=tag, source=ImageTag.Source.IMPLIED) for image in tagged for tag in implied],
        ignore_conflicts=True,
    )
    refresh_usage_counts([tag.pk for tag in implied])
    return implication


class SearchError(ValueError):
    """A search the library refuses (too many terms); the message says what to change."""


def search_images(
    all_of: Iterable[str] = (), none_of: Iterable[str] = (), any_of: Iterable[str] = (), status: str | None = "ok"
) -> QuerySet[Image]:
    """Images carrying every tag of `all_of`, none of `none_of` and at least one of `any_of`.

    At most SEARCH_MAX_TERMS terms (SearchError past it). Names resolve to tag ids first, so the planner
    sees ids, not name joins. Up to EXISTS_TERMS all-of tags are one EXISTS probe of the (image, tag) index
    each: a page walks images newest first and stops after its rows (0.6 ms for 3 popular tags at 100k
    images). Past that, all-of is one grouped scan of the image-tag index (`HAVING count = n`, 86 ms there)
    instead of a join per term, whose planning time grows exponentially.
    """
    all_of, none_of, any_of = list(all_of), list(none_of), list(any_of)
    terms = len(all_of) + len(none_of) + len(any_of)
    if terms > settings.SEARCH_MAX_TERMS:
        raise SearchError(f"{terms} search terms; at most {settings.SEARCH_MAX_TERMS} are allowed in one search.")
    images = Image.objects.all()
    if status:
        images = images.filter(status=status)
    ids = search_term_ids([*all_of, *none_of, *any_of])

    ranked: dict[int | None, int] = {}
    for tag_id in ids.values():  # most used first
        ranked.setdefault(tag_id, len(ranked))

    def ids_of(raws: list[str]) -> list[int]:
        return sorted({ids[raw] for raw in raws if ids.get(raw) is not None}, key=ranked.get)

    required = [raw for raw in all_of if raw in ids]  # junk names (empty, too long) are left out
    carried: list[int] = []
    if required:
        if any(ids[raw] is None for raw in required):
            return images.none()  # a tag nobody has: nothing carries every one
        carried = ids_of(required)
        if len(carried) > EXISTS_TERMS:
            counted = ImageTag.objects.filter(tag_id__in=carried).values("image_id").annotate(n=Count("tag_id"))
            images = images.filter(pk__in=counted.filter(n=len(carried)).values("image_id"))
            carried = []
    alternatives = ids_of(any_of)
    if any_of and not alternatives:
        return images.none()  # none of the alternatives exists
    excluded = ids_of(none_of)
    if carried or excluded or alternatives:
        images = images.filter(CarriesTags(tuple(carried), tuple(excluded), tuple(alternatives)))
    return images


class CarriesTags(Expression):
    """The tag filters of a search as EXISTS probes of the (image, tag) index, written out rather than composed
    from querysets: `Exists(ImageTag.objects.filter(...))` per term was built, resolved and compiled on every
    request (about a millisecond of web CPU for three tags). Each of `all_of` is one probe, `none_of` one NOT
    EXISTS with `tag_id = ANY`, `any_of` one EXISTS with `tag_id = ANY`: the SQL the querysets wrote. The image's
    id comes in as a column of the outer query (compiled with its alias)."""

    output_field = BooleanField()

    def __init__(self, all_of: tuple[int, ...], none_of: tuple[int, ...], any_of: tuple[int, ...]):
        super().__init__()
        self.all_of, self.none_of, self.any_of = all_of, none_of, any_of
        self.image = F("pk")

    def get_source_expressions(self):
        return [self.image]

    def set_source_expressions(self, exprs):
        (self.image,) = exprs

    def as_sql(self, compiler, connection):
        image, image_params = compiler.compile(self.image)
        table = connection.ops.quote_name(ImageTag._meta.db_table)
        probe = f"EXISTS(SELECT 1 FROM {table} U0 WHERE U0.image_id = {image} AND U0.tag_id"  # noqa: S608
        parts, params = [], []
        for template, value in [
            *((f"{probe} = %s)", tag_id) for tag_id in self.all_of),
            *([(f"NOT {probe} = ANY(%s))", list(self.none_of))] if self.none_of else []),
            *([(f"{probe} = ANY(%s))", list(self.any_of))] if self.any_of else []),
        ]:
            parts.append(template)
            params += [*image_params, value]
        return "(" + " AND ".join(parts) + ")", params


EXISTS_TERMS = 8


def search_term_ids(raw_names: list[str]) -> dict[str, int | None]:
    """Each search term's tag id (None: no such tag), most used first, its name normalised and rewritten by an
    alias as `resolve_names` does, in one query (an alias names its tag; other names look up theirs) instead of
    two. Junk names (empty, NUL bytes, over 255 characters) are left out."""
    normalized = {raw: normalize_tag_name(raw) for raw in raw_names if "\x00" not in raw}
    normalized = {raw: name for raw, name in normalized.items() if 0 < len(name) <= MAX_NAME_LENGTH}
    if not normalized:
        return {}
    alias, tag = (connection.ops.quote_name(model._meta.db_table) for model in (TagAlias, Tag))
    sql = (
        "SELECT n.name, COALESCE(aliased.id, t.id) FROM unnest(%s::text[]) AS n(name) "  # noqa: S608 - models' tables
        f"LEFT JOIN {alias} a ON a.antecedent = n.name LEFT JOIN {tag} aliased ON aliased.id = a.tag_id "
        f"LEFT JOIN {tag} t ON t.name = n.name "
        "ORDER BY COALESCE(aliased.usage_count, t.usage_count) DESC, COALESCE(aliased.name, t.name)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [sorted(set(normalized.values()))])
        found = dict(cursor.fetchall())
    rank = {name: number for number, name in enumerate(found)}
    ordered = sorted(normalized.items(), key=lambda item: rank.get(item[1], len(rank)))
    return {raw: found.get(name) for raw, name in ordered}


def search_text(images: QuerySet[Image], text: str) -> QuerySet[Image]:
    """Images whose approved title, caption or description match `text` in web-search syntax (words, "a phrase",
    -not, or), through the GIN index on the same tsvector (`simple`: no stemming, any language)."""
    if not text.strip():
        return images
    query = SearchQuery(text, config="simple", search_type="websearch")
    return images.alias(text_vector=TEXT_SEARCH_VECTOR).filter(text_vector=query)


_WORD = re.compile(r"\w+")


def tags_matching(query: str) -> Q:
    """Tags with a word of their name or display name beginning with each word of `query` (`hair` finds long_hair,
    `blue ey` blue_eyes), read from the stored `Tag.words` through its GIN index. A query without letters or digits
    (`^_^`, `:d`) matches names containing it, a scan, but a rare one."""
    words = _WORD.findall(query.replace("_", " "))
    if not words:
        return Q(name__icontains=query.strip()) | Q(display_name__icontains=query.strip())
    prefixes = " & ".join(f"'{word}':*" for word in words)
    return Q(words=SearchQuery(prefixes, config="simple", search_type="raw"))


def tag_ids(raw_names: Iterable[str]) -> list[int]:
    """Ids of the existing tags these names resolve to (aliases applied)."""
    names = set(resolve_names(raw_names).values())
    return list(Tag.objects.filter(name__in=names).values_list("pk", flat=True)) if names else []


_QUERY_TERM = re.compile(r'([-~]?)"([^"]*)"?|(\S+)')


def parse_query(query: str) -> tuple[list[str], list[str], list[str]]:
    """`blue_eyes -hat ~cat ~dog` -> all-of, none-of, any-of. Words are tag names (spaces as underscores);
    a name typed with spaces goes in double quotes (`"tabby cat" -"deep sea"`) and is normalised like any name.

    A prefix counts only before a letter or digit, so kaomoji such as `-_-` are searched as written.
    """
    all_of, none_of, any_of = [], [], []
    for prefix, phrase, word in _QUERY_TERM.findall(query):
        if not word:  # a quoted name
            if phrase.strip():
                {"-": none_of, "~": any_of}.get(prefix, all_of).append(phrase)
            continue
        named = any(ch.isalnum() for ch in word[1:])
        if word.startswith("-") and named:
            none_of.append(word[1:])
        elif word.startswith("~") and named:
            any_of.append(word[1:])
        else:
            all_of.append(word)
    return all_of, none_of, any_of


def autocomplete(prefix: str, limit: int = 10) -> list[Tag]:
    """Tags whose name or alias starts with the prefix, most used first."""
    name = normalize_tag_name(prefix)
    if not name:
        return []
    tags = list(Tag.objects.filter(name__startswith=name).order_by("-usage_count", "name")[:limit])
    if len(tags) < limit:
        seen = {tag.pk for tag in tags}
        aliased = (
            Tag.objects.filter(aliases__antecedent__startswith=name)
            .exclude(pk__in=seen)
            .distinct()
            .order_by("-usage_count", "name")
        )
        tags += list(aliased[: limit - len(tags)])
    return tags
