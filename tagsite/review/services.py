"""Deciding proposals of every kind, once: locks, skips, applies or reverts, audits; auto-approve rules; counts."""

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from django.db import OperationalError, connection, transaction
from django.db.models import QuerySet
from django.dispatch import Signal
from django.utils import timezone

from tagsite.models import AutoApproveRule, Decision, Producer, Proposal
from tagsite.review import ReviewKind, get_kind
from tagsite.services.lists import COUNT_CAP, capped_count, count_label  # hub counts stop at the cap: "1,000+"
from tagsite.services.tags import usage_counts_last

log = logging.getLogger(__name__)
Status = Proposal.Status
# Sent after a decide call's transaction commits, with the kind's name, the ids it changed, the status, user, rule.
decided = Signal()
DEADLOCK_RETRIES = 3
T = TypeVar("T")


@dataclass
class Outcome:
    """What one decide call did: ids that changed, ids already in the state asked for, ids that do not exist,
    and ids the kind refused to move (id -> the reason, for a person)."""

    changed: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    refused: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.changed)

    def as_json(self) -> dict:
        """The API's answer (JSON object keys are strings)."""
        return {
            "changed": self.changed,
            "skipped": self.skipped,
            "missing": self.missing,
            "refused": {str(pk): why for pk, why in self.refused.items()},
        }


def decide(
    *,
    kind: str | ReviewKind,
    ids: Iterable[int],
    status: str,
    user=None,
    via: str,
    rule: AutoApproveRule | None = None,
    only_pending: bool = False,
) -> Outcome:
    """Decide proposals of one kind: rows locked in id order, those already in `status` skipped (and audited as
    such), approvals applied, approvals taken back reverted, one Decision row per proposal. With `only_pending`
    (always for a rule) decided proposals are skipped too. A deadlock (a safety net: the lock order should
    prevent them) is retried. A move the kind refuses (`ReviewKind.refuse`) is skipped with its reason. An
    auto-approval must name its rule, and only an auto-approval has one."""
    kind = get_kind(kind) if isinstance(kind, str) else kind
    if status not in Status.values:
        raise ValueError(f"unknown status {status!r}: one of {', '.join(Status.values)}")
    if (status == Status.AUTO_APPROVED) != (rule is not None):
        raise ValueError("an auto-approval names its rule, and only an auto-approval has one")
    if rule is not None and rule.kind != kind.name:
        raise ValueError(f"rule {rule.name!r} is for {rule.kind}, not {kind.name}")
    ids = sorted({int(pk) for pk in ids})

    def work() -> Outcome:
        with usage_counts_last():  # the popular tags' rows locked for the commit alone
            return _decide(kind, ids, status, user, via, rule, only_pending or rule is not None)

    return atomic_with_deadlock_retry(work, f"deciding {len(ids)} {kind.name}")


def atomic_with_deadlock_retry(work: Callable[[], T], what: str) -> T:
    """`work()` in a transaction, run again (up to DEADLOCK_RETRIES times in all) when PostgreSQL picked it as
    a deadlock's victim. Inside a caller's transaction it runs once: only the caller can retry the whole."""
    attempts = 1 if connection.in_atomic_block else DEADLOCK_RETRIES
    for attempt in range(1, attempts + 1):
        try:
            with transaction.atomic():
                return work()
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != "40P01" or attempt == attempts:
                raise
            log.warning("deadlock %s, retry %d: %s", what, attempt, exc)
            time.sleep(0.05 * attempt)
    raise AssertionError("unreachable")


def _decide(kind: ReviewKind, ids: list[int], status: str, user, via: str, rule, only_pending: bool) -> Outcome:
    rows = list(
        kind.model.objects.select_for_update(of=("self",))
        .filter(pk__in=ids)
        .order_by("pk")
        .select_related(*kind.related)
        .defer(*kind.deferred)
    )
    outcome = Outcome(missing=sorted(set(ids) - {row.pk for row in rows}))
    changing, skipped, previous = [], [], {}
    for row in rows:
        movable = row.status != status and (row.status == Status.PENDING or not only_pending)
        (changing if movable else skipped).append(row)
        previous[row.pk] = row.status
    outcome.refused = kind.refuse(changing, status) if changing else {}
    changing = [row for row in changing if row.pk not in outcome.refused]
    applied = Proposal.APPLIED
    to_revert = [row for row in changing if row.status in applied and status not in applied]
    to_apply = [row for row in changing if row.status not in applied and status in applied]
    now = timezone.now()
    for row in changing:
        row.status, row.decided_by, row.decided_at, row.via = status, user, now, via
    if to_revert:
        kind.revert(to_revert, user)
    if to_apply:
        kind.apply(to_apply, user)
    outcome.changed, outcome.skipped = [row.pk for row in changing], [row.pk for row in skipped]
    if changing:  # one status, user, time and via for all: an UPDATE by ids, not bulk_update's CASE per row and field
        rows_changed = kind.model.objects.filter(pk__in=outcome.changed)
        rows_changed.update(status=status, decided_by=user, decided_at=now, via=via)
        if kind.decided_fields:
            kind.model.objects.bulk_update(changing, kind.decided_fields)
    if changing:  # listeners (the metadata auto-write) act on committed decisions only
        changed = list(outcome.changed)
        transaction.on_commit(
            lambda: decided.send(sender=kind.model, kind=kind.name, ids=changed, status=status, user=user, rule=rule)
        )
    applied_ids = set(outcome.changed)
    Decision.objects.bulk_create(
        [
            Decision(
                kind=kind.name,
                object_id=row.pk,
                previous=previous[row.pk],
                status=status,
                applied=row.pk in applied_ids,
                user=user,
                via=via,
                rule=rule,
            )
            for row in rows
        ]
    )
    return outcome


def auto_approve(kind: str | ReviewKind, proposals: QuerySet, named_only: bool = False) -> int:
    """Apply the kind's active rules to these (new) proposals: each pending one at or above a rule's confidence,
    from the rule's producer or any, is approved by that rule, which the audit names. `named_only`: only rules
    that name a producer (proposals whose confidence is no probability, e.g. a VLM keyword's rank)."""
    kind = get_kind(kind) if isinstance(kind, str) else kind
    done = 0
    rules = AutoApproveRule.objects.filter(kind=kind.name, active=True)
    if named_only:
        rules = rules.exclude(producer=None)
    for rule in rules.order_by("-min_confidence", "pk"):
        matching = proposals.filter(status=Status.PENDING, confidence__gte=rule.min_confidence)
        if rule.producer_id is not None:
            matching = matching.filter(producer_id=rule.producer_id)
        ids = list(matching.values_list("pk", flat=True))
        if ids:
            done += len(decide(kind=kind, ids=ids, status=Status.AUTO_APPROVED, via=Proposal.Via.RULE, rule=rule))
    return done


def proposals(
    kind: ReviewKind,
    *,
    status: str = "",
    producer: int | None = None,
    min_confidence: float | None = None,
    max_confidence: float | None = None,
    subjects: dict[str, int] | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet:
    """A kind's proposals filtered by ids and ranges only (names are resolved to ids before), for keyset paging."""
    queryset = kind.queryset()
    if status:
        queryset = queryset.filter(status=status)
    if producer is not None:
        queryset = queryset.filter(producer_id=producer)
    if min_confidence is not None:
        queryset = queryset.filter(confidence__gte=min_confidence)
    if max_confidence is not None:
        queryset = queryset.filter(confidence__lte=max_confidence)
    for name, pk in (subjects or {}).items():  # the kind's own foreign keys: tag, image, ...
        if name not in kind.subject_fields:
            raise ValueError(f"{kind.name} cannot be filtered by {name!r} (only {', '.join(kind.subject_fields)})")
        queryset = queryset.filter(**{f"{name}_id": pk})
    if created_after is not None:
        queryset = queryset.filter(created_at__gte=created_after)
    if created_before is not None:
        queryset = queryset.filter(created_at__lt=created_before)
    return queryset


def capped_label(queryset: QuerySet, cap: int = COUNT_CAP) -> str:
    """A capped count as people read it: "12", or "1,000+" past the cap."""
    return count_label(*capped_count(queryset, cap))


@dataclass
class KindCounts:
    kind: ReviewKind
    pending: int
    capped: bool
    producers: list[tuple[Producer, int, bool]]


def pending_counts(kinds: Iterable[ReviewKind], cap: int = COUNT_CAP) -> list[KindCounts]:
    """Pending proposals per kind and per producer, each count capped: the hub's numbers. One query per kind (every
    proposal has a producer, so the kind's count is the producers' sum) and one for the producers."""
    pending = {kind.name: _pending_per_producer(kind, cap) for kind in kinds}
    producers = Producer.objects.in_bulk({pk for counts in pending.values() for pk in counts})
    result = []
    for kind in kinds:
        counts = pending[kind.name]
        total = sum(counts.values())
        ordered = sorted((producers[pk] for pk in counts), key=lambda p: (p.name, p.version, p.prompt_version))
        per_producer = [(producer, min(counts[producer.pk], cap), counts[producer.pk] > cap) for producer in ordered]
        result.append(KindCounts(kind, min(total, cap), total > cap, per_producer))
    return result


def _pending_per_producer(kind: ReviewKind, cap: int) -> dict[int, int]:
    """Producer id -> its pending proposals of a kind, counted up to cap + 1 (one index probe per producer)."""
    table = connection.ops.quote_name(kind.model._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT id, n FROM (SELECT p.id, (SELECT count(*) FROM (SELECT 1 FROM "  # noqa: S608 - a model's table
            f"{table} x WHERE x.producer_id = p.id AND x.status = %s LIMIT %s) AS rows) AS n "
            "FROM tagsite_producer p) AS counted WHERE n > 0",
            [Status.PENDING, cap + 1],
        )
        return dict(cursor.fetchall())


def pending_about_image(image_id: int, user, limit: int = 50) -> list[dict]:
    """What waits for a human about one image, every kind that has an `image` (the image page lists them): kind,
    producer, what it proposes, and the kind's screen."""
    from tagsite.review import all_kinds
    from tagsite.review.api import can_view

    rows = []
    for kind in all_kinds():
        if "image" not in {f.name for f in kind.model._meta.get_fields()} or not can_view(user, kind):
            continue
        for proposal in kind.queryset().filter(image_id=image_id, status=Status.PENDING).order_by("pk")[:limit]:
            rows.append(
                {
                    "kind": kind.label or kind.name,
                    "producer": str(proposal.producer),
                    "what": kind.summary(proposal),
                    "url": kind.screen_url(),
                }
            )
    return rows
