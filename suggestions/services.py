"""Suggestions: installing taggers, running them over images, mapping their labels, review, learning from it.

Every prediction ends up in exactly one place: a pending TagSuggestion (mapped, aliases and
implications applied), the unmapped worklist (held until a moderator maps or ignores the label),
or nowhere because a mapping says ignore, the image already has the tag, or a human rejected the
same tag from the same model before.
"""

import csv
import hashlib
import math
import os
import shutil
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from statistics import NormalDist

import numpy as np
import onnx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Count, Q, QuerySet
from django.utils.text import slugify

from suggestions.models import (
    HeldPrediction,
    ImageRun,
    MLModelVersion,
    TagMapping,
    TagSuggestion,
    UnmappedTag,
    validate_category_thresholds,
)
from tagsite.ai.onnx import load_pixels, load_tagger, predict_files, read_input_shape
from tagsite.models import Image, ImageStage, ImageTag, Tag, TagImplication
from tagsite.review import services as review
from tagsite.services.ingest import record_stage
from tagsite.services.jobs import JobProgress
from tagsite.services.tags import get_or_create_tags, resolve_names

MODEL_FILE = "model.onnx"
LABEL_FILES = ("selected_tags.csv", "labels.csv")
RATING = Tag.DanbooruCategory.RATING
STAGE = "suggest"


class ModelInstallError(Exception):
    """A model that cannot be installed: files missing, not the WD14 contract, or not downloadable."""


# Installing models


def download_model(repo_id: str, revision: str | None = None) -> Path:
    """Fetch model.onnx and selected_tags.csv from Hugging Face into its cache; needs the network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        folder = snapshot_download(repo_id, revision=revision, allow_patterns=[MODEL_FILE, *LABEL_FILES])
    except (HfHubHTTPError, OSError) as exc:
        raise ModelInstallError(
            f"cannot download {repo_id} from Hugging Face: {type(exc).__name__}: {exc}\n"
            "The machine looks offline (or the repository does not exist). Download model.onnx and "
            "selected_tags.csv on a connected machine, then run: install_model NAME --from DIR"
        ) from exc
    return Path(folder)


def install_model(
    name: str,
    source_dir: str | Path,
    *,
    version: str = "",
    kind: str = MLModelVersion.Kind.WD14,
    label_source: str = "",
    thresholds: dict[str, float] | None = None,
    use_mcut: bool = False,
    activate: bool = True,
    origin: str = "",
) -> MLModelVersion:
    """Copy a model folder into the models directory and register it; shape facts come from the graph."""
    thresholds = {**settings.SUGGESTIONS_DEFAULT_THRESHOLDS, **checked_thresholds(thresholds)}
    source_dir = Path(source_dir)
    model_path = source_dir / MODEL_FILE
    labels_path = next((source_dir / f for f in LABEL_FILES if (source_dir / f).is_file()), None)
    if not model_path.is_file() or labels_path is None:
        raise ModelInstallError(f"{source_dir} needs {MODEL_FILE} and one of {', '.join(LABEL_FILES)}")
    sha256 = file_sha256(model_path)
    size, fixed_batch, outputs = read_graph_shape(model_path)
    labels = read_labels(str(labels_path))
    if outputs is not None and outputs != len(labels.names):
        raise ModelInstallError(f"the model has {outputs} outputs but {labels_path.name} lists {len(labels.names)}")
    version = version or sha256[:12]
    target = Path(settings.SUGGESTIONS_MODELS_DIR) / slugify(name) / slugify(version)
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_path, target / MODEL_FILE)
    shutil.copyfile(labels_path, target / labels_path.name)
    model, _ = MLModelVersion.objects.update_or_create(
        name=name,
        version=version,
        defaults={
            "kind": kind,
            "label_source": label_source or ("danbooru" if kind == MLModelVersion.Kind.WD14 else name),
            "model_file": str(target / MODEL_FILE),
            "labels_file": str(target / labels_path.name),
            "sha256": sha256,
            "input_size": size,
            "fixed_batch": fixed_batch,
            "label_count": len(labels.names),
            "thresholds": thresholds,
            "use_mcut": use_mcut,
            "active": activate,
            "source": origin or str(source_dir),
        },
    )
    return model


def checked_thresholds(thresholds) -> dict[str, float]:
    """The model field's own check, before any file is copied: a bad value would break every later run."""
    thresholds = {} if thresholds is None else thresholds
    try:
        validate_category_thresholds(thresholds)
    except ValidationError as exc:
        raise ModelInstallError(" ".join(exc.messages)) from exc
    return thresholds


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(partial(handle.read, 1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_graph_shape(path: Path) -> tuple[int, int | None, int | None]:
    """(input size, fixed batch or None, number of outputs or None) from the ONNX graph."""
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # noqa: BLE001 - protobuf raises several kinds on a bad file
        raise ModelInstallError(f"{path} is not a readable ONNX model: {exc}") from exc
    initializers = {init.name for init in graph.initializer}
    inputs = [item for item in graph.input if item.name not in initializers]
    dims = lambda value: [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]  # noqa: E731
    try:
        size, fixed_batch = read_input_shape(dims(inputs[0]))
    except (IndexError, ValueError) as exc:
        raise ModelInstallError(f"{path} is not in the WD14 contract: {exc}") from exc
    output_dims = dims(graph.output[0])
    return size, fixed_batch, output_dims[-1] if output_dims else None


@dataclass(frozen=True)
class Labels:
    names: list[str]
    categories: np.ndarray


CATEGORY_NAMES = {label: value for value, label in Tag.DanbooruCategory.choices}


def read_labels(path: str) -> Labels:
    """Row i is output i: `selected_tags.csv` (tag_id,name,category,count) or any CSV with a `name` column."""
    stat = os.stat(path)
    return _read_labels(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=32)
def _read_labels(path: str, mtime_ns: int, size: int) -> Labels:
    """Cached per file version: a label file rewritten in place (a reinstall) is read again."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "name" not in rows[0]:
        raise ModelInstallError(f"{path} has no `name` column")
    return Labels([row["name"] for row in rows], np.array([label_category(path, row.get("category")) for row in rows]))


def label_category(path: str, raw: str | None) -> int:
    """Danbooru's number (as in selected_tags.csv) or its name, which a custom label file may use; none: general."""
    raw = (raw or "0").strip().lower()
    category = int(raw) if raw.isdigit() else CATEGORY_NAMES.get(raw)
    if category is None:
        raise ModelInstallError(f"{path}: unknown category {raw!r} (a number or one of {', '.join(CATEGORY_NAMES)})")
    return category


# Running models


def category_key(category: int) -> str:
    return Tag.DanbooruCategory(category).label if category in Tag.DanbooruCategory.values else "general"


def threshold_vector(model: MLModelVersion, labels: Labels) -> np.ndarray:
    """Per-label thresholds: the label's own, else its category's, else the general one; infinite when turned off."""
    general = model.thresholds.get("general", settings.SUGGESTIONS_DEFAULT_THRESHOLDS["general"])
    per_category = {c: model.thresholds.get(category_key(c), general) for c in set(labels.categories.tolist())}
    disabled = set(model.disabled_labels)
    return np.array(
        [
            math.inf if name in disabled else model.tag_thresholds.get(name, per_category[category])
            for name, category in zip(labels.names, labels.categories.tolist(), strict=True)
        ],
        dtype=np.float32,
    )


def mcut_threshold(probabilities: np.ndarray) -> float:
    """Maximum cut thresholding (Largeron et al. 2012): the middle of the widest gap between sorted scores."""
    ordered = np.sort(probabilities)[::-1]
    if len(ordered) < 2:
        return 0.0
    gap = int(np.argmax(ordered[:-1] - ordered[1:]))
    return float((ordered[gap] + ordered[gap + 1]) / 2)


@dataclass
class Candidate:
    label: str
    category: int
    confidence: float


def select_labels(
    model: MLModelVersion, labels: Labels, thresholds: np.ndarray, probabilities: np.ndarray
) -> tuple[str, list[Candidate]]:
    """The rating (best rating label) and the labels above their thresholds (or MCut's)."""
    is_rating = labels.categories == RATING
    rating = ""
    if is_rating.any():
        rating = labels.names[int(np.flatnonzero(is_rating)[np.argmax(probabilities[is_rating])])]
    limits = thresholds.copy()
    if model.use_mcut:
        for category in set(labels.categories.tolist()) - {RATING}:
            members = labels.categories == category
            floor = 0.15 if category == Tag.DanbooruCategory.CHARACTER else 0.0
            limits[members] = max(floor, mcut_threshold(probabilities[members]))
    chosen = np.flatnonzero(~is_rating & np.isfinite(thresholds) & (probabilities >= limits))  # MCut keeps off off
    return rating, [Candidate(labels.names[i], int(labels.categories[i]), float(probabilities[i])) for i in chosen]


def active_models(name: str | None = None) -> QuerySet[MLModelVersion]:
    models = MLModelVersion.objects.filter(active=True)
    return models.filter(name=name) if name else models


def images_to_tag(model: MLModelVersion, images: QuerySet[Image] | None = None) -> QuerySet[Image]:
    """Decodable images this model version has not processed yet, oldest first."""
    images = Image.objects.all() if images is None else images
    return images.filter(status=Image.Status.OK).exclude(model_runs__model_version=model).order_by("pk")


def tag_backlog(
    models: Iterable[MLModelVersion],
    progress: JobProgress,
    *,
    batch_size: int | None = None,
    limit: int | None = None,
    skip: int = 0,
    dry_run: bool = False,
) -> dict[str, int]:
    """Each model's backlog (`skip`ped, at most `limit` images) under one Job, so the command and the
    task report progress over the same total and counts."""
    work = []
    for model in models:
        backlog = images_to_tag(model)[skip:]
        work.append((model, list(backlog[:limit] if limit else backlog)))
    progress.set_total(sum(len(images) for _, images in work))
    for model, images in work:
        counts = suggest_tags(model, images, batch_size=batch_size, progress=progress, dry_run=dry_run)
        for key, value in counts.items():
            progress.count(key, value)
    progress.job.message = ", ".join(f"{value} {key}" for key, value in progress.job.counts.items())
    return progress.job.counts


@dataclass
class Result:
    image: Image
    rating: str
    candidates: list[Candidate]


def suggest_tags(
    model: MLModelVersion,
    images: Iterable[Image],
    *,
    batch_size: int | None = None,
    progress: JobProgress | None = None,
    dry_run: bool = False,
) -> dict[str, int]:
    """Run a model over images and store suggestions batch by batch, each batch in one transaction."""
    counts = {"images": 0, "suggestions": 0, "held": 0, "failed": 0}
    batch_size = batch_size or settings.SUGGESTIONS_BATCH_SIZE
    results: list[Result] = []
    for result, error in predict_images(model, images, batch_size):
        if error:
            counts["failed"] += 1
            record_stage(result.image, STAGE, ImageStage.Status.FAILED, f"{model}: {error}")
            if progress:
                progress.error(result.image.path, error)
        elif dry_run:
            counts["images"] += 1
            counts["suggestions"] += len(result.candidates)
            if progress and progress.bar is not None:
                names = ", ".join(f"{c.label} {c.confidence:.2f}" for c in result.candidates)
                progress.bar.write(f"{result.image.path}: rating {result.rating}; {names}")
        else:
            results.append(result)
        if len(results) >= batch_size:
            store_results(model, results, counts)
            results = []
        if progress:
            progress.advance()
    store_results(model, results, counts)
    return counts


def predict_images(model: MLModelVersion, images: Iterable[Image], batch_size: int) -> Iterator[tuple[Result, str]]:
    """(result, "") per decoded image and (empty result, error) per file that could not be decoded."""
    labels = read_labels(model.labels_file)
    thresholds = threshold_vector(model, labels)
    tagger = load_tagger(model.model_file, use_gpu=settings.SUGGESTIONS_USE_GPU)
    load = lambda image, out: load_pixels(image.path, tagger.input_size, settings.MAX_IMAGE_PIXELS, out)  # noqa: E731
    threads = settings.SUGGESTIONS_DECODE_THREADS
    for prediction in predict_files(tagger, images, load, batch_size=batch_size, threads=threads):
        if prediction.error:
            yield Result(prediction.item, "", []), prediction.error
        else:
            rating, candidates = select_labels(model, labels, thresholds, prediction.probabilities)
            yield Result(prediction.item, rating, candidates), ""


def store_results(model: MLModelVersion, results: list[Result], counts: dict[str, int]) -> None:
    """Store each image's result exactly once, however often the work is delivered (or run side by side)."""
    for _attempt in range(3):
        try:
            with transaction.atomic():
                stored, held, images = _store(model, results)
            break
        except IntegrityError:  # another worker stored some of these meanwhile: the next attempt skips them
            continue
    else:
        raise RuntimeError(f"could not store {len(results)} results of {model}: keys kept conflicting")
    counts["images"] += images
    counts["suggestions"] += stored
    counts["held"] += held


def _store(model: MLModelVersion, results: list[Result]) -> tuple[int, int, int]:
    done = set(
        ImageRun.objects.filter(model_version=model, image__in=[r.image for r in results]).values_list(
            "image_id", flat=True
        )
    )
    results = [r for r in results if r.image.pk not in done]
    if not results:
        return 0, 0, 0
    ImageRun.objects.bulk_create([ImageRun(image=r.image, model_version=model, rating=r.rating) for r in results])
    by_rating: dict[str, list[int]] = defaultdict(list)
    for result in results:
        by_rating[result.rating].append(result.image.pk)
    for rating, image_ids in by_rating.items():
        if rating:
            Image.objects.filter(pk__in=image_ids).update(rating=rating)
    mapped, held = resolve_labels(model, [c for r in results for c in r.candidates])
    per_image: dict[Image, dict[Tag, Candidate]] = {}
    held_rows = []
    for result in results:
        per_image[result.image] = {}
        for candidate in result.candidates:
            if candidate.label in held:
                held_rows.append(
                    HeldPrediction(
                        unmapped=held[candidate.label],
                        image=result.image,
                        model_version=model,
                        confidence=candidate.confidence,
                    )
                )
            elif (target := mapped.get(candidate.label)) is not None:
                tag, factor = target
                best = per_image[result.image].get(tag)
                if best is None or best.confidence < candidate.confidence * factor:
                    per_image[result.image][tag] = Candidate(
                        candidate.label, candidate.category, candidate.confidence * factor
                    )
    HeldPrediction.objects.bulk_create(held_rows, ignore_conflicts=True)
    stored = create_suggestions(model, per_image)
    ImageStage.objects.bulk_create(
        [ImageStage(image=r.image, stage=STAGE, status=ImageStage.Status.DONE, error="") for r in results],
        update_conflicts=True,
        unique_fields=["image", "stage"],
        update_fields=["status", "error", "updated_at"],
    )
    return stored, len(held_rows), len(results)


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


def create_suggestions(model: MLModelVersion, per_image: dict[Image, dict[Tag, Candidate]]) -> int:
    """Pending suggestions for the tags and what they imply, minus tags an image has or a human rejected."""
    implies = implication_edges({tag.pk for tags in per_image.values() for tag in tags})
    image_ids = [image.pk for image in per_image]
    rejected = TagSuggestion.objects.filter(
        image_id__in=image_ids, model_version__name=model.name, status=TagSuggestion.Status.REJECTED
    ).values_list("image_id", "tag_id")
    excluded = set(ImageTag.objects.filter(image_id__in=image_ids).values_list("image_id", "tag_id").union(rejected))
    suggestions = []
    for image, tags in per_image.items():
        confidence = {tag.pk: candidate for tag, candidate in tags.items()}
        frontier = list(confidence)
        while frontier:  # implied tags inherit the best confidence of what implies them
            antecedent = frontier.pop()
            for consequent in implies.get(antecedent, ()):
                best = confidence.get(consequent)
                if best is None or best.confidence < confidence[antecedent].confidence:
                    confidence[consequent] = confidence[antecedent]
                    frontier.append(consequent)
        suggestions += [
            TagSuggestion(
                image=image,
                tag_id=tag_id,
                model_version=model,
                producer_id=model.producer_id,
                external_tag=c.label,
                category=c.category,
                confidence=c.confidence,
            )
            for tag_id, c in confidence.items()
            if (image.pk, tag_id) not in excluded
        ]
    stored = len(TagSuggestion.objects.bulk_create(suggestions, ignore_conflicts=True))
    review.auto_approve("tagsuggestion", TagSuggestion.objects.filter(image_id__in=image_ids, model_version=model))
    return stored


def implication_edges(tag_ids: set[int]) -> dict[int, list[int]]:
    """antecedent -> consequents for everything reachable from these tags (one query per level)."""
    edges: dict[int, list[int]] = defaultdict(list)
    frontier, seen = set(tag_ids), set(tag_ids)
    while frontier:
        rows = TagImplication.objects.filter(antecedent_id__in=frontier).values_list("antecedent_id", "consequent_id")
        frontier = set()
        for antecedent, consequent in rows:
            edges[antecedent].append(consequent)
            if consequent not in seen:
                seen.add(consequent)
                frontier.add(consequent)
    return edges


# Mappings and the unmapped worklist


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


def worklist(source: str | None = None) -> QuerySet[UnmappedTag]:
    """Unmapped labels, the most predicted first, with how many images wait on each."""
    entries = UnmappedTag.objects.annotate(
        waiting=Count("predictions__image", distinct=True), predictions_count=Count("predictions")
    )
    if source:
        entries = entries.filter(source=source)
    return entries.order_by("-waiting", "external_tag")


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


# Review


def decide(suggestions: Iterable[TagSuggestion], status: str, user, via: str = "page") -> int:
    """Approve or reject suggestions through the review core (tagsite.review): approval tags the image with
    provenance, rejection is remembered, a change of mind takes back what the approval added."""
    ids = [s.pk for s in suggestions]
    return len(review.decide(kind="tagsuggestion", ids=ids, status=status, user=user, via=via))


def review_images(images: Iterable[Image], threshold: float, user, via: str = "page") -> dict[str, int]:
    """Approve each image's pending suggestions at or above `threshold` and reject the rest."""
    pending = TagSuggestion.objects.filter(image__in=list(images), status=TagSuggestion.Status.PENDING)
    return {
        "approved": decide(pending.filter(confidence__gte=threshold), TagSuggestion.Status.APPROVED, user, via),
        "rejected": decide(pending.filter(confidence__lt=threshold), TagSuggestion.Status.REJECTED, user, via),
    }


def review_queue(
    status: str = TagSuggestion.Status.PENDING,
    model: str = "",
    tag: str = "",
    min_confidence: float | None = None,
    max_confidence: float | None = None,
) -> tuple[QuerySet[Image], QuerySet[TagSuggestion]]:
    """Images with matching suggestions (oldest first), and those suggestions."""
    suggestions = TagSuggestion.objects.all()
    if status:
        suggestions = suggestions.filter(status=status)
    if model:
        suggestions = suggestions.filter(model_version__name=model)
    if tag:
        suggestions = suggestions.filter(Q(tag__name__startswith=tag) | Q(external_tag__startswith=tag))
    if min_confidence is not None:
        suggestions = suggestions.filter(confidence__gte=min_confidence)
    if max_confidence is not None:
        suggestions = suggestions.filter(confidence__lte=max_confidence)
    images = Image.objects.filter(pk__in=suggestions.values("image_id")).order_by("pk")
    return images, suggestions.select_related("tag", "model_version")


# Learning from review

CONFIDENCE_LEVEL = 0.95  # one-sided: how sure a recommendation must be that the target precision holds
TURN_OFF_BELOW = 0.5  # a label whose approval rate is below this even at the optimistic bound is turned off


def wilson_bounds(approved: int, decided: int, confidence: float = CONFIDENCE_LEVEL) -> tuple[float, float]:
    """One-sided Wilson score bounds of an approval rate: wide for a few decisions, narrow for many."""
    z = NormalDist().inv_cdf(confidence)
    rate, spread = approved / decided, z * z / decided
    centre = rate + spread / 2
    margin = z * math.sqrt(rate * (1 - rate) / decided + spread / (4 * decided))
    return max(0.0, (centre - margin) / (1 + spread)), min(1.0, (centre + margin) / (1 + spread))


@dataclass(frozen=True)
class ThresholdStep:
    """The decided suggestions at or above one confidence: how many, how many approved, the bounds."""

    threshold: float
    decided: int
    approved: int
    lower: float
    upper: float

    @property
    def precision(self) -> float:
        return self.approved / self.decided


def threshold_steps(outcomes: list[tuple[float, bool]], confidence: float = CONFIDENCE_LEVEL) -> list[ThresholdStep]:
    """One step per distinct decided confidence, highest first (ties go together)."""
    steps: list[ThresholdStep] = []
    decided = approved = 0
    ordered = sorted(outcomes, reverse=True)
    for index, (score, ok) in enumerate(ordered):
        decided, approved = decided + 1, approved + ok
        if index + 1 == len(ordered) or ordered[index + 1][0] != score:
            steps.append(ThresholdStep(score, decided, approved, *wilson_bounds(approved, decided, confidence)))
    return steps


def step_at(steps: list[ThresholdStep], threshold: float) -> ThresholdStep | None:
    """The decided suggestions a threshold lets through (the lowest step at or above it)."""
    reached = [step for step in steps if step.threshold >= threshold]
    return reached[-1] if reached else None


def recommend_threshold(
    outcomes: list[tuple[float, bool]], target_precision: float, current: float, confidence: float = CONFIDENCE_LEVEL
) -> float | None:
    """The lowest threshold step whose Wilson lower bound reaches the target, or None (keep the current one).

    Never a raise for a label whose precision at the current threshold already reaches the target:
    raising it would only drop correct tags (the all-approved label raised to its lowest score).
    """
    steps = threshold_steps(outcomes, confidence)
    reaching = [step.threshold for step in steps if step.lower >= target_precision]
    if not reaching:
        return None
    best = min(reaching)
    now = step_at(steps, current)
    if best > current and (now is None or now.precision >= target_precision):
        return None
    return best if best != current else None


@dataclass
class TagPrecision:
    """The evidence for one model version's label: decisions, precision and its bound, current and recommended."""

    model_version: MLModelVersion
    label: str
    tag_name: str
    approved: int
    rejected: int
    pending: int
    threshold: float
    disabled: bool  # turned off for this model version: never suggested
    decided: int  # decided suggestions at or above the current threshold
    precision: float | None  # of those
    lower_bound: float | None  # Wilson lower bound of that precision
    recommended: float | None  # a threshold that reaches the target with confidence; None: keep
    turn_off: bool  # almost always rejected: recommend turning it off

    @property
    def changes(self) -> bool:
        return self.turn_off or self.recommended is not None


def review_report(
    models: Iterable[MLModelVersion] | None = None,
    target_precision: float = 0.9,
    confidence: float = CONFIDENCE_LEVEL,
) -> list[TagPrecision]:
    """Per model version and label: decisions, precision at the current threshold with its bound, a recommendation."""
    suggestions = TagSuggestion.objects.all()
    if models is not None:
        suggestions = suggestions.filter(model_version__in=list(models))
    decided: dict[tuple[int, str], list[tuple[float, bool]]] = defaultdict(list)
    names: dict[tuple[int, str], str] = {}
    pending: dict[tuple[int, str], int] = defaultdict(int)
    rows = suggestions.values_list("model_version_id", "external_tag", "tag__name", "confidence", "status")
    for model_id, label, tag_name, score, status in rows.iterator():
        key = (model_id, label)
        names.setdefault(key, tag_name)
        if status == TagSuggestion.Status.PENDING:
            pending[key] += 1
        else:
            decided[key].append((score, status == TagSuggestion.Status.APPROVED))
    versions = MLModelVersion.objects.in_bulk({model_id for model_id, _ in names})
    thresholds = {pk: label_thresholds(version) for pk, version in versions.items()}
    report = []
    for (model_id, label), tag_name in sorted(names.items(), key=lambda item: (item[0][0], item[0][1])):
        outcomes = decided.get((model_id, label), [])
        disabled = label in versions[model_id].disabled_labels
        threshold = float(thresholds[model_id].get(label, 0.0))
        now = step_at(threshold_steps(outcomes, confidence), threshold)
        recommended = None if disabled else recommend_threshold(outcomes, target_precision, threshold, confidence)
        report.append(
            TagPrecision(
                model_version=versions[model_id],
                label=label,
                tag_name=tag_name,
                approved=sum(ok for _, ok in outcomes),
                rejected=sum(not ok for _, ok in outcomes),
                pending=pending[(model_id, label)],
                threshold=threshold,
                disabled=disabled,
                decided=now.decided if now else 0,
                precision=now.precision if now else None,
                lower_bound=now.lower if now else None,
                recommended=recommended,
                # almost always rejected: even the optimistic bound of its precision is below TURN_OFF_BELOW
                turn_off=not disabled and recommended is None and now is not None and now.upper < TURN_OFF_BELOW,
            )
        )
    return report


def label_thresholds(model: MLModelVersion) -> dict[str, float]:
    labels = read_labels(model.labels_file)
    return dict(zip(labels.names, threshold_vector(model, labels).tolist(), strict=True))


def apply_thresholds(
    model: MLModelVersion, thresholds: dict[str, float], turn_off: Iterable[str] = ()
) -> MLModelVersion:
    """Set per-label thresholds and turn labels off (from the report) on a model version; later runs use them."""
    turn_off = set(turn_off)
    model.tag_thresholds = {
        **{label: value for label, value in model.tag_thresholds.items() if label not in turn_off},
        **{label: float(value) for label, value in thresholds.items()},
    }
    model.disabled_labels = sorted((set(model.disabled_labels) | turn_off) - set(thresholds))
    model.save(update_fields=["tag_thresholds", "disabled_labels"])
    return model


def apply_recommendations(rows: Iterable[TagPrecision]) -> dict[MLModelVersion, tuple[int, int]]:
    """Apply the report's recommendations: model version -> (thresholds set, labels turned off)."""
    changes: dict[MLModelVersion, tuple[dict[str, float], set[str]]] = defaultdict(lambda: ({}, set()))
    for row in rows:
        if row.recommended is not None:
            changes[row.model_version][0][row.label] = row.recommended
        elif row.turn_off:
            changes[row.model_version][1].add(row.label)
    for model, (thresholds, turn_off) in changes.items():
        apply_thresholds(model, thresholds, turn_off)
    return {model: (len(thresholds), len(turn_off)) for model, (thresholds, turn_off) in changes.items()}
