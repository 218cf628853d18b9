"""Categorising tags into the 22 extended categories: by hand, by review of proposals, and by an LLM.

The LLM path asks about many tags per request, with a JSON schema whose category is an enum of
the codes and whose items point back at the tags by index. Every answer is checked item by item;
only the missing or invalid tags are asked again (at most 3 attempts), cached answers are never
asked twice, and requests run in parallel up to the endpoint's slots.
"""

import hashlib
import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Count, Exists, F, OuterRef, Prefetch, Q, QuerySet

from categorization.models import CachedAnswer, CategoryProposal, ExtendedCategory, TagCategory
from tagsite.ai.base import ChatBackend, LLMError, LLMInvalidOutput, LLMTruncated
from tagsite.models import AutoApproveRule, Job, LLMEndpoint, Producer, Proposal, Tag
from tagsite.review import services as review
from tagsite.services.jobs import JobProgress, describe_error

MAX_ATTEMPTS = 3
REVIEW_KIND = "categoryproposal"
AUTO_APPLY_RULE = "TAGSITE_CATEGORIZE_AUTO_APPLY"  # the setting, as the rule its approvals name (applied only by it)
Status, Via = Proposal.Status, Proposal.Via
USER_TEMPLATE = "Categorise these tags (index: tag, times used):\n{lines}"


@dataclass(frozen=True)
class TagItem:
    pk: int
    name: str
    usage_count: int = 0


@dataclass
class Outcome:
    tag: TagItem
    code: str = ""
    confidence: float = 0.0
    error: str = ""
    cached: bool = False

    @property
    def ok(self) -> bool:
        return bool(self.code)


@dataclass
class Summary:
    processed: int = 0
    successful: int = 0
    failed: int = 0
    cached: int = 0
    requests: int = 0
    failures: list[Outcome] = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        return 100.0 * self.successful / self.processed if self.processed else 0.0


@dataclass(frozen=True)
class Prompt:
    """The system prompt and schema for a set of categories; `version` changes whenever they do."""

    system: str
    schema: dict
    codes: frozenset[str]
    version: str

    @classmethod
    def build(cls, categories: Iterable[ExtendedCategory] | None = None) -> "Prompt":
        categories = list(categories if categories is not None else ExtendedCategory.objects.all())
        lines = "\n".join(f"{c.code}: {c.description} ({c.get_group_display()})" for c in categories)
        system = (
            "You sort image tags (Danbooru style, underscores for spaces) into exactly one of these "
            f"{len(categories)} extended categories:\n{lines}\n\n"
            "Judge each tag by what it means on image boards. Answer with JSON only: one item per tag, "
            "its index, the category code, and your confidence from 0 to 1."
        )
        codes = [c.code for c in categories]
        item = {
            "type": "object",
            "properties": {
                "index": {"type": "integer"},
                "category": {"type": "string", "enum": codes},
                "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            },
            "required": ["index", "category", "confidence"],
            "additionalProperties": False,
        }
        schema = {
            "type": "object",
            "properties": {"items": {"type": "array", "items": item}},
            "required": ["items"],
            "additionalProperties": False,
        }
        version = hashlib.sha1((system + USER_TEMPLATE).encode()).hexdigest()[:12]
        return cls(system, schema, frozenset(codes), version)

    def user(self, tags: list[TagItem]) -> str:
        return USER_TEMPLATE.format(lines="\n".join(f"{i}: {t.name} ({t.usage_count})" for i, t in enumerate(tags)))


def valid_items(data: Any, size: int, codes: frozenset[str]) -> dict[int, tuple[str, float]]:
    """The answer's usable items by index: in range, a known code, and each index exactly once."""
    items = data.get("items") if isinstance(data, dict) else None
    if not isinstance(items, list):
        return {}
    seen = Counter(item.get("index") for item in items if isinstance(item, dict))
    found = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        index, code, confidence = item.get("index"), item.get("category"), item.get("confidence")
        if not isinstance(index, int) or not 0 <= index < size or seen[index] != 1 or code not in codes:
            continue
        confidence = float(confidence) if isinstance(confidence, int | float) else 0.5
        found[index] = (code, min(1.0, max(0.0, confidence)))
    return found


def ask(client: ChatBackend, prompt: Prompt, tags: list[TagItem], counter: Callable[[], None]) -> list[Outcome]:
    """Categorise a batch of tags, re-asking only the missing or invalid ones, up to MAX_ATTEMPTS times.

    A truncated answer halves the batch for the next attempt; an unreachable server ends the batch
    at once (the client has already retried it).
    """
    answers: dict[int, tuple[str, float]] = {}
    pending, size, problem = list(tags), len(tags), ""
    for _ in range(MAX_ATTEMPTS):
        if not pending:
            break
        truncated = False
        for start in range(0, len(pending), size):
            chunk = pending[start : start + size]
            counter()
            try:
                data = client.chat_json(prompt.system, prompt.user(chunk), prompt.schema, name="tag_categories")
            except LLMTruncated as exc:
                truncated, data, problem = True, None, str(exc)
            except LLMInvalidOutput as exc:
                data, problem = exc.data, str(exc)
            except LLMError as exc:
                return settle(tags, answers, str(exc))
            for index, answer in valid_items(data, len(chunk), prompt.codes).items():
                answers[chunk[index].pk] = answer
            if data is not None and len(answers) < len(tags):
                problem = problem or "answer left out tags or gave a category outside the 22"
        pending = [tag for tag in pending if tag.pk not in answers]
        if truncated:
            size = max(1, size // 2)
    return settle(tags, answers, f"after {MAX_ATTEMPTS} attempts: {problem}")


def settle(tags: list[TagItem], answers: dict[int, tuple[str, float]], problem: str) -> list[Outcome]:
    return [Outcome(tag, *answers[tag.pk]) if tag.pk in answers else Outcome(tag, error=problem) for tag in tags]


def categorize(
    client: ChatBackend,
    tags: list[TagItem],
    *,
    request_size: int,
    prompt: Prompt | None = None,
    on_outcomes: Callable[[list[Outcome]], None] = lambda outcomes: None,
) -> Summary:
    """Categorise the tags: cached answers first, the rest in requests of `request_size`, with as many
    requests in flight as the endpoint has slots. `on_outcomes` sees each finished request (in this thread)."""
    prompt = prompt or Prompt.build()
    model = client.config.model
    summary = Summary()
    cached = {
        row.tag_name: row
        for row in CachedAnswer.objects.filter(
            tag_name__in=[tag.name for tag in tags], model=model, prompt_version=prompt.version
        ).select_related("category")
    }
    hits = [
        Outcome(tag, cached[tag.name].category.code, cached[tag.name].confidence, cached=True)
        for tag in tags
        if tag.name in cached
    ]
    if hits:
        record(summary, hits, on_outcomes)
    todo = [tag for tag in tags if tag.name not in cached]
    work: queue.Queue = queue.Queue()
    for start in range(0, len(todo), request_size):
        work.put(todo[start : start + request_size])
    done: queue.Queue = queue.Queue()
    lock = threading.Lock()

    def count_request() -> None:
        with lock:
            summary.requests += 1

    def worker() -> None:
        try:
            while True:
                try:
                    batch = work.get_nowait()
                except queue.Empty:
                    return
                try:
                    done.put(ask(client, prompt, batch, count_request))
                except Exception as exc:  # noqa: BLE001 - a bug in one batch must not hang the run
                    done.put([Outcome(tag, error=describe_error(exc)) for tag in batch])
        finally:
            connections.close_all()  # the slot semaphore's connection of this thread

    batches = work.qsize()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(batches, client.config.max_parallel))]
    for thread in threads:
        thread.start()
    try:
        for _ in range(batches):
            record(summary, done.get(), on_outcomes)
    finally:  # a cancelled job (or any error here) sends no further requests
        with work.mutex:
            work.queue.clear()
    for thread in threads:
        thread.join()
    return summary


def record(summary: Summary, outcomes: list[Outcome], on_outcomes: Callable[[list[Outcome]], None]) -> None:
    summary.processed += len(outcomes)
    for outcome in outcomes:
        if outcome.ok:
            summary.successful += 1
            summary.cached += outcome.cached
        else:
            summary.failed += 1
            summary.failures.append(outcome)
    on_outcomes(outcomes)


def uncategorized_tags(model: str, prompt_version: str) -> QuerySet[Tag]:
    """Tags without a category, most used first, less those with a proposal waiting for review and those
    whose proposal from this model and prompt was rejected (asking again would bring it back from the cache)."""
    settled = CategoryProposal.objects.filter(
        Q(status=Status.PENDING)
        | Q(status=Status.REJECTED, producer__name=model, producer__prompt_version=prompt_version),
        tag=OuterRef("pk"),
    )
    return Tag.objects.filter(category_link__isnull=True).exclude(Exists(settled)).order_by("-usage_count", "name")


@transaction.atomic
def save_outcomes(
    outcomes: list[Outcome], *, model: str, prompt: Prompt, auto_apply: bool, job: Job | None, endpoint: str = ""
) -> None:
    """Cache the answers and store them as proposals; auto-approve rules (and the auto-apply setting, itself a
    rule the audit names) approve some at once. All or nothing."""
    answered = [outcome for outcome in outcomes if outcome.ok]
    if not answered:
        return
    categories = {c.code: c for c in ExtendedCategory.objects.filter(code__in={o.code for o in answered})}
    CachedAnswer.objects.bulk_create(
        [
            CachedAnswer(
                tag_name=o.tag.name,
                model=model,
                prompt_version=prompt.version,
                category=categories[o.code],
                confidence=o.confidence,
            )
            for o in answered
            if not o.cached
        ],
        ignore_conflicts=True,
    )
    producer = chat_producer(model, prompt.version, endpoint)
    CategoryProposal.objects.bulk_create(
        [
            CategoryProposal(
                tag_id=o.tag.pk, category=categories[o.code], confidence=o.confidence, producer=producer, job=job
            )
            for o in answered
        ],
        ignore_conflicts=True,
    )
    new = CategoryProposal.objects.filter(
        tag_id__in=[o.tag.pk for o in answered], producer=producer, status=CategoryProposal.Status.PENDING
    )
    if auto_apply:
        rule, _ = AutoApproveRule.objects.get_or_create(
            name=AUTO_APPLY_RULE, defaults={"kind": REVIEW_KIND, "min_confidence": 0, "active": False}
        )
        review.decide(
            kind=REVIEW_KIND, ids=new.values_list("pk", flat=True), status=Status.AUTO_APPROVED, via=Via.RULE, rule=rule
        )
    review.auto_approve(REVIEW_KIND, new)


def chat_producer(model: str, prompt_version: str, endpoint: str = "") -> Producer:
    """The producer of a chat model's answers under a prompt version (linked to its registry endpoint, if any)."""
    producer, _ = Producer.objects.get_or_create(
        kind=Producer.Kind.CHAT,
        name=model,
        version="",
        prompt_version=prompt_version,
        defaults={"endpoint": LLMEndpoint.objects.filter(name=endpoint).first() if endpoint else None},
    )
    return producer


def categorize_uncategorized(
    client: ChatBackend,
    *,
    batch_size: int = 100,
    limit: int | None = None,
    skip: int = 0,
    dry_run: bool = False,
    request_size: int | None = None,
    auto_apply: bool | None = None,
    progress: JobProgress | None = None,
    on_outcome: Callable[[Outcome], None] = lambda outcome: None,
) -> Summary:
    """Seed 000's run: the `limit` (default: one batch of `batch_size`) most used uncategorised tags after
    `skip`, fetched `batch_size` at a time; answers become proposals, or categories with auto-apply."""
    auto_apply = settings.CATEGORIZE_AUTO_APPLY if auto_apply is None else auto_apply
    total = limit if limit is not None else batch_size
    prompt = Prompt.build()
    rows = uncategorized_tags(client.config.model, prompt.version).values_list("pk", "name", "usage_count")
    tags = [TagItem(*row) for row in rows[skip : skip + total].iterator(chunk_size=batch_size)]
    job = progress.job if progress else None
    if progress:
        progress.set_total(len(tags))

    def handle(outcomes: list[Outcome]) -> None:
        if not dry_run:
            save_outcomes(
                outcomes,
                model=client.config.model,
                prompt=prompt,
                auto_apply=auto_apply,
                job=job,
                endpoint=client.config.name,
            )
        for outcome in outcomes:
            if not outcome.ok and progress:
                progress.error(outcome.tag.name, outcome.error)
            on_outcome(outcome)
        if progress:
            ok = sum(outcome.ok for outcome in outcomes)
            progress.advance(len(outcomes), successful=ok, failed=len(outcomes) - ok)

    summary = categorize(
        client, tags, request_size=request_size or settings.CATEGORIZE_REQUEST_SIZE, prompt=prompt, on_outcomes=handle
    )
    if progress:
        progress.job.message = summary_line(summary, dry_run)
    return summary


def summary_line(summary: Summary, dry_run: bool = False) -> str:
    line = (
        f"processed {summary.processed}, successful {summary.successful}, failed {summary.failed}, "
        f"success rate {summary.success_rate:.1f}% ({summary.cached} cached, {summary.requests} requests)"
    )
    return line + (" - dry run, nothing saved" if dry_run else "")


# Human decisions

STATES = [("all", "all tags"), ("uncategorised", "uncategorised"), ("proposal", "has a pending proposal")]


def filter_tags(query: str = "", code: str = "", state: str = "all") -> QuerySet[Tag]:
    """Tags matching the page's (and the API's) filters, most used first, each with its category's code in
    `.category_code` (None when uncategorised) and its pending proposal in `.pending` (a list of at most one)."""
    pending = CategoryProposal.objects.filter(status=CategoryProposal.Status.PENDING).select_related(
        "category", "producer"
    )
    tags = Tag.objects.annotate(category_code=F("category_link__category__code")).prefetch_related(
        Prefetch("category_proposals", queryset=pending, to_attr="pending")
    )
    if query:
        tags = tags.filter(Q(name__icontains=query) | Q(display_name__icontains=query))
    if code:
        tags = tags.filter(category_link__category__code=code)
    if state == "uncategorised":
        tags = tags.filter(category_link__isnull=True)
    elif state == "proposal":  # Exists, not a join: a tag with two pending proposals is still one row
        tags = tags.filter(Exists(pending.filter(tag=OuterRef("pk"))))
    return tags.order_by("-usage_count", "name")


def assign_category(tag_ids: Iterable[int], category: ExtendedCategory | None) -> int:
    """Put tags in a category (None: uncategorise them), one statement; returns how many of the tags exist."""
    existing = list(Tag.objects.filter(pk__in=list(tag_ids)).values_list("pk", flat=True))
    if category is None:
        TagCategory.objects.filter(tag_id__in=existing).delete()
    else:
        TagCategory.objects.bulk_create(
            [TagCategory(tag_id=tag_id, category=category) for tag_id in existing],
            update_conflicts=True,
            unique_fields=["tag"],
            update_fields=["category"],
        )
    return len(existing)


def set_category(tag_ids: Iterable[int], category: ExtendedCategory | None, user, via: str = Via.PAGE) -> int:
    """Categorise tags by hand; their pending proposals are settled by the same decision (approved when they
    proposed this category, rejected otherwise), through the review core so the audit has them."""
    tag_ids = list(tag_ids)
    with transaction.atomic():
        updated = assign_category(tag_ids, category)
        pending = CategoryProposal.objects.filter(tag_id__in=tag_ids, status=Status.PENDING)
        for status, chosen in ((Status.APPROVED, pending.filter(category=category)), (Status.REJECTED, pending)):
            ids = list(chosen.values_list("pk", flat=True))
            review.decide(kind=REVIEW_KIND, ids=ids, status=status, user=user, via=via, only_pending=True)
    return updated


def accept_proposals(proposals: QuerySet[CategoryProposal], user, via: str = Via.PAGE) -> int:
    """Apply pending proposals to their tags (decided ones stay as they are: these endpoints never change a mind)."""
    return _decide_pending(proposals, Status.APPROVED, user, via)


def reject_proposals(proposals: QuerySet[CategoryProposal], user, via: str = Via.PAGE) -> int:
    return _decide_pending(proposals, Status.REJECTED, user, via)


def _decide_pending(proposals: QuerySet[CategoryProposal], status: str, user, via: str) -> int:
    ids = list(proposals.filter(status=Status.PENDING).values_list("pk", flat=True))
    return len(review.decide(kind=REVIEW_KIND, ids=ids, status=status, user=user, via=via, only_pending=True))


def distribution() -> list[tuple[str, str, int]]:
    """(code, name, tag count) per category, then uncategorised, for the chart."""
    counted = ExtendedCategory.objects.annotate(n=Count("tag_links")).order_by("code")
    rows = list(counted.values_list("code", "name", "n"))
    # Every tag less the categorised ones: a count of one table, not an anti-join over every tag (half the time).
    return [*rows, ("", "uncategorised", Tag.objects.count() - sum(n for _, _, n in rows))]
