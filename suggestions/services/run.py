"""Running taggers over images: thresholds, batches, and storing each image's result exactly once."""

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet

from suggestions.models import (
    HeldPrediction,
    ImageRun,
    MLModelVersion,
)
from suggestions.services.install import Labels, read_labels
from suggestions.services.mappings import resolve_labels
from suggestions.services.review import Candidate, create_suggestions
from tagsite.ai.onnx import load_pixels, load_tagger, predict_files
from tagsite.models import Image, ImageStage, Tag
from tagsite.services.ingest import record_stage, record_stages
from tagsite.services.jobs import JobProgress, summarize_counts

RATING = Tag.DanbooruCategory.RATING
STAGE = "suggest"


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
    """Taggers that run on images (a VLM keywords version is a producer, never a tagger, even if ticked active)."""
    models = MLModelVersion.objects.filter(active=True).exclude(kind=MLModelVersion.Kind.VLM)
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
    progress.job.message = summarize_counts(progress.job.counts)
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
    """Run a model over images and store suggestions batch by batch, each batch in one transaction; the
    progress's job (the rolling auto-tagging job or a backlog job) is recorded on the suggestions."""
    counts = {"images": 0, "suggestions": 0, "held": 0, "failed": 0}
    job_id = progress.job.pk if progress else None
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
            store_results(model, results, counts, job_id)
            results = []
        if progress:
            progress.advance()
    store_results(model, results, counts, job_id)
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


def store_results(
    model: MLModelVersion, results: list[Result], counts: dict[str, int], job_id: int | None = None
) -> None:
    """Store each image's result exactly once, however often the work is delivered (or run side by side)."""
    for _attempt in range(3):
        try:
            with transaction.atomic():
                stored, held, images = _store(model, results, job_id)
            break
        except IntegrityError:  # another worker stored some of these meanwhile: the next attempt skips them
            continue
    else:
        raise RuntimeError(f"could not store {len(results)} results of {model}: keys kept conflicting")
    counts["images"] += images
    counts["suggestions"] += stored
    counts["held"] += held


def _store(model: MLModelVersion, results: list[Result], job_id: int | None) -> tuple[int, int, int]:
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
    stored, held = propose_labels(model, [(r.image, r.candidates) for r in results], job_id)
    record_stages(STAGE, [(r.image, ImageStage.Status.DONE, "") for r in results])
    return stored, held, len(results)


def propose_labels(
    model: MLModelVersion, results: list[tuple[Image, list[Candidate]]], job_id: int | None
) -> tuple[int, int]:
    """Labels per image through the mappings (aliases and implications applied) into pending suggestions, or held
    on the unmapped worklist: taggers' labels and VLM keywords alike. Returns (suggestions stored, held)."""
    mapped, held = resolve_labels(model, [c for _, candidates in results for c in candidates])
    per_image: dict[Image, dict[Tag, Candidate]] = {}
    held_rows = []
    for image, candidates in results:
        per_image[image] = {}
        for candidate in candidates:
            if candidate.label in held:
                held_rows.append(
                    HeldPrediction(
                        unmapped=held[candidate.label],
                        image=image,
                        model_version=model,
                        confidence=candidate.confidence,
                    )
                )
            elif (target := mapped.get(candidate.label)) is not None:
                tag, factor = target
                best = per_image[image].get(tag)
                if best is None or best.confidence < candidate.confidence * factor:
                    per_image[image][tag] = Candidate(
                        candidate.label, candidate.category, candidate.confidence * factor
                    )
    HeldPrediction.objects.bulk_create(held_rows, ignore_conflicts=True)
    return create_suggestions(model, per_image, job_id=job_id), len(held_rows)
