"""Tag embeddings (compute, store, index, look up), near-duplicate clusters, merge proposals and merges."""

import json
import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.apps import apps
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import Q

from dedupe.clustering import Cluster, TagInfo, cluster_tags, lexical_key
from dedupe.models import EmbeddingSpace, MergeMember, MergeProposal, MustNotMerge, TagEmbedding
from tagsite.ai.base import EmbeddingBackend, EndpointConfig, LLMError
from tagsite.models import Image, ImageTag, Job, Producer, Proposal, Tag, TagAlias, TagImplication
from tagsite.services import tags as tag_service
from tagsite.services.jobs import JobProgress

log = logging.getLogger(__name__)
RECIPE = "v1"  # underscores to spaces, the display name, the space's prefix
DEFAULT_THRESHOLD = 0.85  # seed 001's default
RECOMMENDED_THRESHOLD = 0.9  # MiniLM: lexical keys find the easy half, this band the rest with few siblings
NEIGHBOURS = 10  # nearest neighbours read per tag from the index
# "Did you mean" offers only tags this close to the typed text (MiniLM: puppy/dog 0.80, blonde/yellow hair 0.59,
# puppy/cat 0.53; puppy/car 0.46, puppy/smile 0.31, puppy/sky 0.27).
DID_YOU_MEAN_FLOOR = 0.5
# HNSW candidates per lookup: pgvector's default 40 took 2.6x the time of 12 for the same recall of the pairs
# >= 0.85 (0.996 of the exact pairs at 20k tags, k 10)
EF_SEARCH = 16
REVIEW_BAND = 0.1  # near tags down to threshold - band are shown beside a cluster (excluded, to add by hand)
PARALLEL_TAGS = 5000  # tags per database session at least, when the neighbour search is split over the cores
CHUNK = 1024  # texts embedded and stored per transaction (a killed run keeps every finished chunk)


def embedding_text(display_name: str, prefix: str = "") -> str:
    """The text a tag is embedded from: `prefix` + its display name with underscores as spaces."""
    return prefix + display_name.replace("_", " ")


def space_for(client: EmbeddingBackend, prefix: str = "", activate: bool = False) -> EmbeddingSpace:
    """The space of this model and recipe (created with its dimensions on first use); the first one is active."""
    config: EndpointConfig = client.config
    producer, _ = Producer.objects.get_or_create(
        kind=Producer.Kind.EMBEDDING, name=config.model or config.name, version="", prompt_version=_recipe(prefix)
    )
    space = EmbeddingSpace.objects.filter(producer=producer).first()
    if space is None:
        dimensions = len(client.embed([embedding_text("test", prefix)])[0])
        space = EmbeddingSpace.objects.create(
            producer=producer, prefix=prefix, dimensions=dimensions, endpoint=config.described()
        )
    if activate or not EmbeddingSpace.objects.filter(active=True).exists():
        activate_space(space)
    return space


def _recipe(prefix: str) -> str:
    return f"{RECIPE} {prefix.strip()}".strip()[:32]


@transaction.atomic
def activate_space(space: EmbeddingSpace) -> None:
    EmbeddingSpace.objects.filter(active=True).exclude(pk=space.pk).update(active=False)
    EmbeddingSpace.objects.filter(pk=space.pk).update(active=True)
    space.active = True


def active_space() -> EmbeddingSpace | None:
    return EmbeddingSpace.objects.select_related("producer").filter(active=True).first()


def embed_array(client: EmbeddingBackend, texts: list[str]) -> np.ndarray:
    """Unit float32 vectors: the local model gives an array; a server's lists are converted and normalised."""
    if hasattr(client, "embed_array"):
        return client.embed_array(texts)
    vectors = np.asarray(client.embed(texts), dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def stale_tags(space: EmbeddingSpace, tag_ids: Iterable[int] | None = None) -> list[tuple[int, str]]:
    """(tag id, text) of tags without a vector in the space, or whose text changed since (a renamed tag)."""
    tags = Tag.objects.all() if tag_ids is None else Tag.objects.filter(pk__in=list(tag_ids))
    stored = dict(TagEmbedding.objects.filter(space=space).values_list("tag_id", "text").iterator(chunk_size=20000))
    wanted = []
    for pk, display_name in tags.order_by("-usage_count", "pk").values_list("pk", "display_name").iterator(20000):
        text = embedding_text(display_name, space.prefix)
        if stored.get(pk) != text:
            wanted.append((pk, text))
    return wanted


def embed_tags(
    client: EmbeddingBackend,
    space: EmbeddingSpace,
    *,
    batch_size: int = 64,
    limit: int | None = None,
    tag_ids: Iterable[int] | None = None,
    progress: JobProgress | None = None,
) -> dict[str, int]:
    """Embed what is missing or stale in the space (at most `limit`, the most used), shortest names first, a chunk
    per transaction (resumable: a rerun does only what is left), then make sure the space's HNSW index exists."""
    todo = stale_tags(space, tag_ids)[:limit] if limit else stale_tags(space, tag_ids)
    # by length, so each model batch pads to names of about its own length (1.5x less CPU per tag than sorting
    # within each chunk only: 20,000 tags, 340-360 against 225-240 per CPU-second of the process)
    todo.sort(key=lambda item: len(item[1]))
    if progress is not None:
        progress.set_total(len(todo))
    counts = {"embedded": 0}
    started = time.monotonic()
    for start in range(0, len(todo), max(CHUNK, batch_size)):
        chunk = todo[start : start + max(CHUNK, batch_size)]
        texts = [text for _, text in chunk]
        vectors = np.concatenate(
            [embed_array(client, texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
        )
        store_vectors(space, [pk for pk, _ in chunk], texts, vectors)
        counts["embedded"] += len(chunk)
        if progress is not None:
            progress.advance(len(chunk), embedded=len(chunk))
    seconds = time.monotonic() - started
    if counts["embedded"]:
        log.info("embedded %d tags in %.1fs (%.0f tags/s)", counts["embedded"], seconds, counts["embedded"] / seconds)
    ensure_index(space)
    return counts


def store_vectors(space: EmbeddingSpace, tag_ids: list[int], texts: list[str], vectors: np.ndarray) -> None:
    """Upsert one chunk in one statement (the vectors travel as pgvector's text form)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO dedupe_tagembedding (space_id, tag_id, text, embedding, updated_at) "
            "SELECT %s, t.tag_id, t.text, t.embedding::vector, now() "
            "FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS t(tag_id, text, embedding) "
            "WHERE EXISTS (SELECT 1 FROM tagsite_tag WHERE id = t.tag_id) "  # a tag deleted meanwhile is skipped
            "ON CONFLICT (space_id, tag_id) DO UPDATE SET text = EXCLUDED.text, embedding = EXCLUDED.embedding, "
            "updated_at = EXCLUDED.updated_at",
            [space.pk, tag_ids, texts, [_literal(v) for v in vectors]],
        )


def _literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.6g}" for x in vector.tolist()) + "]"


def _column(space: EmbeddingSpace) -> str:
    """The indexed expression: queries must spell it the same way for PostgreSQL to use the index."""
    return f"(embedding::vector({int(space.dimensions)}))"


def ensure_index(space: EmbeddingSpace) -> None:
    """The space's HNSW cosine index (a partial expression index: one per space, each of its own dimension)."""
    with connection.cursor() as cursor:
        if connection.in_atomic_block:  # deferred foreign-key checks of this transaction's inserts block an index
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET maintenance_work_mem = '512MB'")
        cursor.execute(
            f"CREATE INDEX IF NOT EXISTS {space.index_name} ON dedupe_tagembedding "
            f"USING hnsw ({_column(space)} vector_cosine_ops) WHERE space_id = {int(space.pk)}"
        )
        cursor.execute("RESET maintenance_work_mem")


def vectors_for(space: EmbeddingSpace, tag_ids: list[int]) -> np.ndarray:
    """Stored unit vectors, rows in the ids' order (every id must have one)."""
    rows = dict(
        TagEmbedding.objects.filter(space=space, tag_id__in=tag_ids).values_list("tag_id", "embedding").iterator(5000)
    )
    return np.stack([np.asarray(rows[pk], dtype=np.float32) for pk in tag_ids])


@dataclass
class Similar:
    tag: Tag
    similarity: float


def similar_to_vector(space: EmbeddingSpace, vector, k: int = 10, exclude: Iterable[int] = ()) -> list[Similar]:
    """The k nearest tags of the space by cosine, from its HNSW index."""
    exclude = list(exclude)
    column = _column(space)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT tag_id, 1 - ({column} <=> %(v)s::vector) FROM dedupe_tagembedding "  # noqa: S608 - our column
            f"WHERE space_id = %(space)s AND NOT (tag_id = ANY(%(exclude)s)) ORDER BY {column} <=> %(v)s::vector "
            "LIMIT %(k)s",
            {"v": _literal(np.asarray(vector)), "space": space.pk, "exclude": exclude, "k": k},
        )
        rows = cursor.fetchall()
    tags = Tag.objects.in_bulk([pk for pk, _ in rows])
    return [Similar(tags[pk], float(sim)) for pk, sim in rows if pk in tags]


def similar_tags(tag: Tag, k: int = 10, space: EmbeddingSpace | None = None) -> list[Similar]:
    """Tags nearest to `tag` in the active space; a tag not embedded yet is embedded now when the space is the
    local model (milliseconds), otherwise it has no neighbours until `embed_tags` runs."""
    space = space or active_space()
    if space is None:
        return []
    vector = TagEmbedding.objects.filter(space=space, tag=tag).values_list("embedding", flat=True).first()
    if vector is None:
        client = local_client_for(space)
        if client is None:
            return []
        vector = embed_array(client, [embedding_text(tag.display_name, space.prefix)])[0]
    return similar_to_vector(space, vector, k, exclude=[tag.pk])


def similar_to_text(text: str, k: int = 5, space: EmbeddingSpace | None = None) -> list[Similar]:
    """Tags that mean a typed text (autocomplete's "did you mean"): the nearest, at least DID_YOU_MEAN_FLOOR
    similar, for the local model only (no server call per keystroke)."""
    space = space or active_space()
    client = local_client_for(space) if space else None
    if client is None or not text.strip():
        return []
    found = similar_to_vector(space, embed_array(client, [embedding_text(text, space.prefix)])[0], k)
    return [item for item in found if item.similarity >= DID_YOU_MEAN_FLOOR]


def local_client_for(space: EmbeddingSpace) -> EmbeddingBackend | None:
    from tagsite.ai.local_embeddings import LocalMiniLM

    if space.endpoint.get("kind") != "local":
        return None
    return LocalMiniLM()


def neighbour_pairs(
    space: EmbeddingSpace, min_similarity: float, k: int = NEIGHBOURS, tag_ids: list[int] | None = None
) -> list[tuple[int, int, float]]:
    """(a, b, similarity) with a < b for each tag's k nearest neighbours at or above `min_similarity`: one
    statement walking the HNSW index once per tag (LATERAL), never an n x n matrix. Outside a transaction the
    tags are split over one database session per core (an index walk is one backend's CPU), each in a thread."""
    ids = tag_ids
    if ids is None:
        ids = list(TagEmbedding.objects.filter(space=space).order_by("tag_id").values_list("tag_id", flat=True))
    workers = min(len(os.sched_getaffinity(0)), max(1, len(ids) // PARALLEL_TAGS))
    if workers < 2 or connection.in_atomic_block:  # a test's transaction is invisible to other sessions
        rows = _neighbour_rows(space, k, tag_ids)
    else:
        slices = [ids[i::workers] for i in range(workers)]
        with ThreadPoolExecutor(workers) as pool:
            rows = [row for part in pool.map(lambda part: _in_own_session(space, k, part), slices) for row in part]
    found: dict[tuple[int, int], float] = {}
    for left, right, sim in rows:
        if left != right and sim >= min_similarity:
            key = (min(left, right), max(left, right))
            found[key] = max(found.get(key, 0.0), float(sim))
    return [(a, b, sim) for (a, b), sim in found.items()]


def _in_own_session(space: EmbeddingSpace, k: int, tag_ids: list[int]) -> list[tuple[int, int, float]]:
    try:
        return _neighbour_rows(space, k, tag_ids)
    finally:
        connection.close()  # this thread's own session


def _neighbour_rows(space: EmbeddingSpace, k: int, tag_ids: list[int] | None) -> list[tuple[int, int, float]]:
    dims = int(space.dimensions)
    a, b = f"(a.embedding::vector({dims}))", f"(b.embedding::vector({dims}))"
    scope = "AND a.tag_id = ANY(%s)" if tag_ids is not None else ""
    params = [space.pk, k, space.pk] + ([tag_ids] if tag_ids is not None else [])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL hnsw.ef_search = {max(EF_SEARCH, k)}")
        cursor.execute(
            f"SELECT a.tag_id, n.tag_id, n.sim FROM dedupe_tagembedding a CROSS JOIN LATERAL ("  # noqa: S608
            f"SELECT b.tag_id, 1 - ({b} <=> {a}) AS sim FROM dedupe_tagembedding b WHERE b.space_id = %s "
            f"ORDER BY {b} <=> {a} LIMIT %s) n WHERE a.space_id = %s {scope}",
            params,
        )
        return cursor.fetchall()


def scope_tag_ids(folder: str) -> list[int]:
    """Tags of the images under a folder (seed 001's one argument)."""
    root = str(Path(folder).resolve()).rstrip("/") + "/"
    images = Image.objects.filter(path__startswith=root)
    return list(ImageTag.objects.filter(image__in=images).values_list("tag_id", flat=True).distinct())


def blocked_pairs() -> set[tuple[int, int]]:
    return {(min(a, b), max(a, b)) for a, b in MustNotMerge.objects.values_list("tag_a_id", "tag_b_id")}


def alias_keys() -> dict[str, int]:
    """Lexical key of every alias name -> the tag it names: a tag written like a known alias joins its target."""
    return {lexical_key(name): tag_id for name, tag_id in TagAlias.objects.values_list("antecedent", "tag_id")}


def find_clusters(
    space: EmbeddingSpace,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    min_cluster_size: int = 2,
    tag_ids: list[int] | None = None,
    k: int = NEIGHBOURS,
) -> list[Cluster]:
    """Clusters over the space's tags (or the scoped ones), guarded; see dedupe.clustering."""
    tags = Tag.objects.filter(embeddings__space=space)
    if tag_ids is not None:
        tags = tags.filter(pk__in=tag_ids)
    infos = [
        TagInfo(pk, name, usage, category)
        for pk, name, usage, category in tags.values_list("pk", "name", "usage_count", "danbooru_category").iterator(
            20000
        )
    ]
    pairs = neighbour_pairs(space, threshold - REVIEW_BAND, k, tag_ids)
    return cluster_tags(
        infos,
        pairs,
        lambda ids: vectors_for(space, ids),
        threshold=threshold,
        alias_targets=alias_keys(),
        blocked=blocked_pairs(),
        min_cluster_size=min_cluster_size,
    )


def affected_files(cluster: Cluster, limit: int = 20) -> dict[str, list[str]]:
    """Per non-representative member, up to `limit` file paths that carry it (seed 001's report)."""
    ids = [t.id for t in cluster.members if t.id != cluster.representative.id]
    found: dict[str, list[str]] = defaultdict(list)
    names = {t.id: t.name for t in cluster.members}
    for tag_id, path in ImageTag.objects.filter(tag_id__in=ids).values_list("tag_id", "image__path")[: limit * 10]:
        if len(found[names[tag_id]]) < limit:
            found[names[tag_id]].append(path)
    return dict(found)


def report(clusters: list[Cluster], *, threshold: float, space: EmbeddingSpace, seconds: float, files: bool) -> dict:
    """Seed 001's `tag_deduplication_report_embedding.json`: clusters with members, frequencies, similarity to
    the representative, and the files a merge would rewrite."""
    return {
        "model": str(space.producer),
        "similarity_threshold": threshold,
        "seconds": round(seconds, 2),
        "clusters_found": len(clusters),
        "tags_merged": sum(len(c.members) - 1 for c in clusters),
        "clusters": [
            {
                "representative": c.representative.name,
                "confidence": round(c.confidence, 4),
                "members": [
                    {
                        "tag": t.name,
                        "frequency": t.usage_count,
                        "similarity": round(c.similarity[t.id], 4),
                        "reason": c.reasons[t.id],
                    }
                    for t in c.members
                ],
                "not_included": [{"tag": t.name, "similarity": round(sim, 4)} for t, sim in c.excluded],
                **({"affected_files": affected_files(c)} if files else {}),
            }
            for c in clusters
        ],
    }


# Proposals and merges


def pending_member_tags() -> set[int]:
    return set(
        MergeMember.objects.filter(proposal__status=Proposal.Status.PENDING, included=True).values_list(
            "tag_id", flat=True
        )
    )


@transaction.atomic
def propose(clusters: list[Cluster], producer: Producer, job: Job | None = None) -> list[MergeProposal]:
    """One pending MergeProposal per cluster; a cluster that shares a tag with a pending proposal waits for it."""
    busy = pending_member_tags()
    created = []
    for cluster in clusters:
        ids = {t.id for t in cluster.members}
        if ids & busy:
            continue
        busy |= ids
        proposal = MergeProposal.objects.create(
            producer=producer,
            job=job,
            confidence=cluster.confidence,
            representative_id=cluster.representative.id,
            representative_name=cluster.representative.name,
            excluded=[{"tag": t.id, "name": t.name, "similarity": round(sim, 4)} for t, sim in cluster.excluded],
        )
        MergeMember.objects.bulk_create(
            [
                MergeMember(
                    proposal=proposal,
                    tag_id=t.id,
                    name=t.name,
                    usage_count=t.usage_count,
                    danbooru_category=t.danbooru_category,
                    similarity=cluster.similarity[t.id],
                    reason=cluster.reasons[t.id],
                )
                for t in cluster.members
            ]
        )
        created.append(proposal)
    from tagsite.review.services import auto_approve

    if created:
        auto_approve("mergeproposal", MergeProposal.objects.filter(pk__in=[p.pk for p in created]))
    return created


def keep_apart(tag_a: int, tag_b: int, user=None) -> None:
    """Remember that two tags must never be proposed together again."""
    a, b = min(tag_a, tag_b), max(tag_a, tag_b)
    if a != b and not MustNotMerge.objects.filter(Q(tag_a=a, tag_b=b) | Q(tag_a=b, tag_b=a)).exists():
        MustNotMerge.objects.create(tag_a_id=a, tag_b_id=b, created_by=user)


class MergeError(ValueError):
    """An edit of a proposal that cannot be made (not pending, not a member); the message says why."""


@transaction.atomic
def set_representative(proposal: MergeProposal, tag_id: int) -> None:
    """A moderator's choice of the tag the others become (a member that is still included)."""
    proposal = MergeProposal.objects.select_for_update().get(pk=proposal.pk)
    if proposal.status != Proposal.Status.PENDING:
        raise MergeError("only a pending proposal can be edited")
    member = proposal.members.filter(tag_id=tag_id, included=True).first()
    if member is None:
        raise MergeError("the representative must be an included member of the cluster")
    proposal.representative_id, proposal.representative_name = tag_id, member.name
    proposal.save(update_fields=["representative", "representative_name"])


@transaction.atomic
def drop_member(proposal: MergeProposal, tag_id: int, user=None) -> None:
    """Leave a member out of the merge; it is remembered as must-not-merge with every other member."""
    proposal = MergeProposal.objects.select_for_update().get(pk=proposal.pk)
    if proposal.status != Proposal.Status.PENDING:
        raise MergeError("only a pending proposal can be edited")
    if tag_id == proposal.representative_id:
        raise MergeError("choose another representative before dropping this one")
    if not proposal.members.filter(tag_id=tag_id, included=True).exists():
        raise MergeError("not an included member of this proposal")
    proposal.members.filter(tag_id=tag_id).update(included=False)
    for other in proposal.members.filter(included=True).values_list("tag_id", flat=True):
        if other is not None:
            keep_apart(tag_id, other, user)


@transaction.atomic
def add_member(proposal: MergeProposal, tag_id: int) -> None:
    """Add a tag (one of the near tags left out, or any) to a pending proposal."""
    proposal = MergeProposal.objects.select_for_update().get(pk=proposal.pk)
    if proposal.status != Proposal.Status.PENDING:
        raise MergeError("only a pending proposal can be edited")
    tag = Tag.objects.get(pk=tag_id)
    similarity = next((e["similarity"] for e in proposal.excluded if e["tag"] == tag_id), 0.0)
    MergeMember.objects.update_or_create(
        proposal=proposal,
        name=tag.name,
        defaults={
            "tag": tag,
            "usage_count": tag.usage_count,
            "danbooru_category": tag.danbooru_category,
            "similarity": similarity,
            "reason": "human",
            "included": True,
        },
    )


def apply_merges(proposals: list[MergeProposal], user) -> list[int]:
    """Each included member becomes an alias of the representative (tagsite's Danbooru rules: images, suggestions,
    mappings, categories, proposals follow in bulk SQL); what was taken away is kept in `undo`. Returns the ids of
    the images whose tags changed (dirty for the metadata writer)."""
    touched: set[int] = set()
    for proposal in proposals:
        target = proposal.representative
        if target is None:
            raise MergeError(f"proposal #{proposal.pk}: its representative tag no longer exists")
        members = list(
            Tag.objects.filter(merge_memberships__proposal=proposal, merge_memberships__included=True).exclude(
                pk=target.pk
            )
        )
        target_images = set(ImageTag.objects.filter(tag=target).values_list("image_id", flat=True))
        undo = {"target": target.name, "target_images": sorted(target_images), "members": []}
        for tag in members:
            links = list(ImageTag.objects.filter(tag=tag).values_list("image_id", "source"))
            undo["members"].append(
                {
                    "name": tag.name,
                    "display_name": tag.display_name,
                    "danbooru_category": tag.danbooru_category,
                    "images": links,
                    "aliases": list(TagAlias.objects.filter(tag=tag).values_list("antecedent", flat=True)),
                    "follow": _following_rows(tag, target),
                }
            )
            touched.update(image_id for image_id, _ in links)
            tag_service.create_alias(tag.name, target.name, user)
        proposal.undo = undo
    return sorted(touched)


def revert_merges(proposals: list[MergeProposal], user) -> list[int]:
    """Undo from the audit: each member tag comes back with its name, category, images and aliases; the
    representative leaves the images that had it only through the merge. Returns the images touched."""
    touched: set[int] = set()
    for proposal in proposals:
        undo = proposal.undo or {}
        target = Tag.objects.filter(name=undo.get("target")).first()
        before = set(undo.get("target_images", ()))
        for member in undo.get("members", ()):
            TagAlias.objects.filter(antecedent=member["name"]).delete()
            tag, _ = Tag.objects.get_or_create(
                name=member["name"],
                defaults={"display_name": member["display_name"], "danbooru_category": member["danbooru_category"]},
            )
            TagAlias.objects.filter(antecedent__in=member["aliases"]).update(tag=tag)
            ImageTag.objects.bulk_create(
                [ImageTag(image_id=image_id, tag=tag, source=source) for image_id, source in member["images"]],
                ignore_conflicts=True,
            )
            MergeMember.objects.filter(proposal=proposal, name=tag.name).update(tag=tag)
            if target is not None:
                _restore_following_rows(member.get("follow", ()), tag, target)
            images = {image_id for image_id, _ in member["images"]}
            if target is not None:
                ImageTag.objects.filter(tag=target, image_id__in=images - before).delete()
            touched |= images
            tag_service.refresh_usage_counts([tag.pk])
        if target is not None:
            tag_service.refresh_usage_counts([target.pk])
        proposal.undo = {}
    return sorted(touched)


# Other apps' rows the merge moves from a member to the representative (tagsite.services.tags._repoint_references):
# suggestions, mappings, category proposals, the extended category. Images and aliases are restored on their own,
# merge memberships by name, and a restored tag's vector is computed again.
NOT_FOLLOWED = {ImageTag, TagAlias, TagImplication, MergeMember, TagEmbedding}


def _following_rows(tag: Tag, target: Tag) -> list[dict]:
    """Before a merge: which rows point at `tag`, by model and field, so an undo can move them back. A row whose key
    is the tag (one per tag: the extended category) is kept by value, with whether the target had its own; a row
    the merge deletes as a duplicate of the target's is not restored."""
    found = []
    for relation in Tag._meta.related_objects:
        model, field = relation.related_model, relation.field
        if not (relation.one_to_many or relation.one_to_one) or model in NOT_FOLLOWED:
            continue
        rows = model._base_manager.filter(**{field.name: tag})
        entry = {"model": model._meta.label, "field": field.name}
        if field.primary_key:
            if values := rows.values().first():
                values.pop(field.attname)
                target_had = model._base_manager.filter(**{field.name: target}).exists()
                values = json.loads(json.dumps(values, cls=DjangoJSONEncoder))
                found.append(entry | {"values": values, "target_had": target_had})
        elif pks := list(rows.values_list("pk", flat=True)):
            found.append(entry | {"pks": pks})
    return found


def _restore_following_rows(follow: Iterable[dict], tag: Tag, target: Tag) -> None:
    """Undo: the rows `_following_rows` saw go back from the representative to the restored member tag."""
    for entry in follow:
        model, field = apps.get_model(entry["model"]), entry["field"]
        if "pks" in entry:
            model._base_manager.filter(pk__in=entry["pks"], **{field: target}).update(**{field: tag})
        elif not entry["target_had"] and model._base_manager.filter(**{field: target}).exists():
            model._base_manager.filter(**{field: target}).update(**{field: tag})  # the member's row became its
        elif not model._base_manager.filter(**{field: tag}).exists():
            model._base_manager.create(**{field: tag}, **entry["values"])


def reject_pairs(proposals: list[MergeProposal], user) -> None:
    """A rejected cluster: its representative and each member are remembered as must-not-merge."""
    for proposal in proposals:
        ids = [pk for pk in proposal.members.filter(included=True).values_list("tag_id", flat=True) if pk]
        for other in ids:
            if proposal.representative_id and other != proposal.representative_id:
                keep_apart(proposal.representative_id, other, user)


def client_for_options(url: str = "", model: str = "", kind: str = "") -> EmbeddingBackend:
    """The embedder seed 001's options name (`--embedding-url`, `--embedding-model`), else the `embed` role's."""
    from tagsite.ai.registry import client_for, client_for_role

    if url:
        base = url.rstrip("/")
        base = base if base.endswith("/v1") else base + "/v1"
        return client_for(
            EndpointConfig(name="embedding-url", kind=kind or "openai", base_url=base, model=model), "embed"
        )
    if model:
        raise LLMError("--embedding-model needs --embedding-url (or set the embed role's model in admin)")
    return client_for_role("embed")


def thumbnails(tag_ids: Iterable[int], per_tag: int = 3) -> dict[int, list[Image]]:
    """A few images per tag (newest first) for the merge screen, in one query: per tag the first rows of the
    (tag, image) index backwards, not a window over every image of the tag (41k for 1girl), and only the
    columns a thumbnail link needs."""
    ids = sorted(set(tag_ids))
    if not ids:
        return {}
    rows = Image.objects.raw(
        f"""SELECT image.id, image.thumbnail, image.sha256, image.path, member.tag_id AS member_tag
        FROM unnest(%s::bigint[]) AS member(tag_id)
        CROSS JOIN LATERAL (
            SELECT image.id, image.thumbnail, image.sha256, image.path
            FROM {ImageTag._meta.db_table} link JOIN {Image._meta.db_table} image ON image.id = link.image_id
            WHERE link.tag_id = member.tag_id AND image.thumbnail <> ''
            ORDER BY link.image_id DESC LIMIT %s
        ) image
        ORDER BY member.tag_id, image.id DESC""",
        [ids, per_tag],
    )
    found: dict[int, list[Image]] = defaultdict(list)
    for image in rows:
        found[image.member_tag].append(image)
    return dict(found)


def embed_names(names: list[str], space: EmbeddingSpace | None = None) -> np.ndarray:
    """Unit vectors of tag names in the active space (rows in the names' order): a tag's stored vector where the
    name is a tag that has one, the rest computed with the space's model (the local one, or the embed role's)."""
    from tagsite.ai.registry import client_for_role

    space = space or active_space()
    if space is None:
        raise LLMError("no tag embeddings yet: run `manage.py embed_tags` first")
    stored = {
        name: np.asarray(vector, dtype=np.float32)
        for name, vector in TagEmbedding.objects.filter(space=space, tag__name__in=names).values_list(
            "tag__name", "embedding"
        )
    }
    missing = [name for name in dict.fromkeys(names) if name not in stored]
    if missing:
        client = local_client_for(space) or client_for_role("embed")
        with client:
            vectors = embed_array(client, [embedding_text(name, space.prefix) for name in missing])
            stored.update(zip(missing, vectors, strict=True))
    return np.stack([stored[name] for name in names]) if names else np.zeros((0, space.dimensions), np.float32)


def refresh_embedding(sender, instance: Tag, **kwargs) -> None:
    """A tag saved with a new display name (admin, API) is re-embedded at once when the active space is the local
    model (milliseconds); with a server model it is stale until the next `embed_tags`, which finds it."""
    if kwargs.get("raw") or kwargs.get("created"):
        return  # fixtures; a new tag has no vector to refresh (embed_tags or a lookup embeds it)
    space = active_space()
    client = local_client_for(space) if space else None
    if client is None:
        return
    text = embedding_text(instance.display_name, space.prefix)
    stored = TagEmbedding.objects.filter(space=space, tag=instance).values_list("text", flat=True).first()
    if stored is not None and stored != text:
        store_vectors(space, [instance.pk], [text], embed_array(client, [text]))
