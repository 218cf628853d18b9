"""Learning from review: precision per model and label, and thresholds that reach a target precision."""

import functools
import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from statistics import NormalDist

from django.db.models import Count, Min, Q

from suggestions.models import (
    MLModelVersion,
    TagSuggestion,
)
from suggestions.services.install import read_labels
from suggestions.services.run import threshold_vector
from tagsite.models import Tag

CONFIDENCE_LEVEL = 0.95  # one-sided: how sure a recommendation must be that the target precision holds
TURN_OFF_BELOW = 0.5  # a label whose approval rate is below this even at the optimistic bound is turned off


@functools.cache
def z_score(confidence: float) -> float:
    """The normal quantile of a confidence level: the report asks it for every step of every label."""
    return NormalDist().inv_cdf(confidence)


def wilson_bounds(approved: int, decided: int, confidence: float = CONFIDENCE_LEVEL) -> tuple[float, float]:
    """One-sided Wilson score bounds of an approval rate: wide for a few decisions, narrow for many."""
    z = z_score(confidence)
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
    return recommend_from_steps(threshold_steps(outcomes, confidence), target_precision, current)


def recommend_from_steps(steps: list[ThresholdStep], target_precision: float, current: float) -> float | None:
    """recommend_threshold on a label's steps already computed."""
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
    """Per model version and label: decisions, precision at the current threshold with its bound, a recommendation.

    Labels and their pending suggestions (most of a million) are counted in SQL; only decided ones, the evidence,
    come to Python, and tag names are read for the labels' tags alone."""
    suggestions = TagSuggestion.objects.order_by()  # no default ordering: it joins and sorts every image
    if models is not None:
        suggestions = suggestions.filter(model_version__in=[model.pk for model in models])
    decided: dict[tuple[int, str], list[tuple[float, bool]]] = defaultdict(list)
    tags: dict[tuple[int, str], int] = {}
    pending: dict[tuple[int, str], int] = defaultdict(int)
    labels = suggestions.values("model_version_id", "external_tag").annotate(
        tag=Min("tag_id"), waiting=Count("pk", filter=Q(status=TagSuggestion.Status.PENDING))
    )
    for model_id, label, tag_id, count in labels.values_list("model_version_id", "external_tag", "tag", "waiting"):
        tags[model_id, label], pending[model_id, label] = tag_id, count
    # a rule's approval is no evidence of precision
    outcomes = suggestions.filter(status__in=[TagSuggestion.Status.APPROVED, TagSuggestion.Status.REJECTED])
    for model_id, label, score, status in outcomes.values_list(
        "model_version_id", "external_tag", "confidence", "status"
    ).iterator():
        decided[model_id, label].append((score, status == TagSuggestion.Status.APPROVED))
    tag_names = dict(Tag.objects.filter(pk__in=set(tags.values())).values_list("pk", "name"))
    names = {key: tag_names[tag_id] for key, tag_id in tags.items()}
    versions = MLModelVersion.objects.in_bulk({model_id for model_id, _ in names})
    thresholds = {pk: label_thresholds(version) for pk, version in versions.items()}
    report = []
    for (model_id, label), tag_name in sorted(names.items(), key=lambda item: (item[0][0], item[0][1])):
        outcomes = decided.get((model_id, label), [])
        disabled = label in versions[model_id].disabled_labels
        threshold = float(thresholds[model_id].get(label, 0.0))
        steps = threshold_steps(outcomes, confidence)
        now = step_at(steps, threshold)
        recommended = None if disabled else recommend_from_steps(steps, target_precision, threshold)
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
