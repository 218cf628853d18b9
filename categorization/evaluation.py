"""How right the categoriser is: the real categoriser path against the configured endpoint on a labelled
file, cross-validated (each fold's tags retrieve their examples from the other folds only, so a tag is
never its own example), stored per producer (model + prompt version)."""

import hashlib
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from categorization.models import CategorizerEvaluation
from categorization.retrieval import Example, LexicalIndex, Retriever, knn_vote
from categorization.services import NEIGHBOURS, Outcome, Prompt, TagItem, categorize, chat_producer
from tagsite.ai.base import ChatBackend

CUTS = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9)
WORST = 5  # categories whose confusion is shown


@dataclass
class Result:
    outcomes: list[tuple[Example, Outcome]] = field(default_factory=list)
    requests: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return sum(o.code == e.code for e, o in self.outcomes) / len(self.outcomes) if self.outcomes else 0.0

    @property
    def knn_accuracy(self) -> float:
        return sum(o.knn_code == e.code for e, o in self.outcomes) / len(self.outcomes) if self.outcomes else 0.0

    def recalls(self) -> dict[str, float]:
        by_code: dict[str, list[bool]] = defaultdict(list)
        for example, outcome in self.outcomes:
            by_code[example.code].append(outcome.code == example.code)
        return {code: sum(hits) / len(hits) for code, hits in sorted(by_code.items())}

    @property
    def macro_recall(self) -> float:
        recalls = self.recalls()
        return sum(recalls.values()) / len(recalls) if recalls else 0.0

    def worst(self, count: int = WORST) -> list[dict]:
        """The categories with the lowest recall, each with what its tags were answered instead."""
        recalls = self.recalls()
        rows = []
        for code in sorted(recalls, key=lambda c: (recalls[c], c))[:count]:
            wrong = Counter(o.code or "(no answer)" for e, o in self.outcomes if e.code == code and o.code != code)
            total = sum(e.code == code for e, _ in self.outcomes)
            rows.append({"category": code, "recall": recalls[code], "tags": total, "answered": wrong.most_common(3)})
        return rows

    def cuts(self) -> list[dict]:
        """Coverage and precision of the answers at or above each confidence."""
        total = len(self.outcomes) or 1
        rows = []
        for cut in CUTS:
            kept = [(e, o) for e, o in self.outcomes if o.ok and o.confidence >= cut]
            precision = sum(o.code == e.code for e, o in kept) / len(kept) if kept else 0.0
            rows.append({"confidence": cut, "coverage": len(kept) / total, "precision": precision})
        return rows

    def answers(self) -> list[list]:
        """[tag, label, answer (or error), kNN vote, kNN strength, second answer, confidence, the LLM's answer
        when the vote overrode it] per tag: what to read to improve the prompt, and to try other ways of
        weighing the LLM against the kNN vote offline."""
        return [
            [
                e.name,
                e.code,
                o.code or o.error,
                o.knn_code,
                round(o.knn_strength, 3),
                o.second_code,
                o.confidence,
                o.llm_code,
            ]
            for e, o in self.outcomes
        ]

    def agreement(self) -> dict:
        """How often the LLM and the kNN vote agree, and how often they are right then."""
        agreed = [(e, o) for e, o in self.outcomes if o.ok and o.code == o.knn_code]
        right = sum(o.code == e.code for e, o in agreed)
        disputed = [(e, o) for e, o in self.outcomes if o.disputed]
        return {
            "agree": len(agreed) / (len(self.outcomes) or 1),
            "precision_when_agreeing": right / len(agreed) if agreed else 0.0,
            "disputed": len(disputed),
            "disputed_right": sum(o.code == e.code for e, o in disputed),
        }


def stable_key(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()


def folds_of(examples: list[Example], folds: int) -> list[list[Example]]:
    """Stratified folds: each category's tags dealt round-robin (in a stable shuffled order) to the folds."""
    ordered = sorted(examples, key=lambda e: (e.code, stable_key(e.name)))
    return [ordered[i::folds] for i in range(folds)]


def stratified_subset(examples: list[Example], size: int) -> set[str]:
    """`size` tag names dealt across the categories in turn, so a subset keeps every category it can."""
    by_code: dict[str, list[Example]] = defaultdict(list)
    for example in sorted(examples, key=lambda e: stable_key(e.name)):
        by_code[example.code].append(example)
    chosen: list[str] = []
    while len(chosen) < min(size, len(examples)):
        for code in sorted(by_code):
            if by_code[code] and len(chosen) < size:
                chosen.append(by_code[code].pop(0).name)
    return set(chosen)


def evaluate(
    client: ChatBackend,
    examples: list[Example],
    *,
    folds: int = 5,
    prompt: Prompt,
    request_size: int,
    twice: bool = False,
    subset: int | None = None,
    index: type = LexicalIndex,
    on_fold=lambda fold, result: None,
) -> Result:
    """Categorise each fold's tags (or those of a stratified subset) with the real categoriser path,
    examples retrieved from the other folds only (`index(examples) -> Retriever`), nothing cached."""
    asked = stratified_subset(examples, subset) if subset else {e.name for e in examples}
    result = Result()
    started = time.perf_counter()
    parts = folds_of(examples, folds)
    for number, part in enumerate(parts):
        # in a stable shuffled order: a fold is sorted by category, and answers in category order look
        # (and are) nothing like a real run, which asks most used first
        tests = sorted((e for e in part if e.name in asked), key=lambda e: stable_key(e.name))
        if not tests:
            continue
        retriever: Retriever = index([e for other in parts if other is not part for e in other])
        items = [TagItem(pk=i, name=e.name) for i, e in enumerate(tests)]
        answers: list[Outcome] = []
        summary = categorize(
            client,
            items,
            request_size=request_size,
            prompt=prompt,
            retriever=retriever,
            twice=twice,
            use_cache=False,
            on_outcomes=answers.extend,
        )
        result.outcomes += [(tests[o.tag.pk], o) for o in sorted(answers, key=lambda o: o.tag.pk)]
        result.requests += summary.requests
        result.warnings += summary.warnings
        on_fold(number, result)
    result.seconds = time.perf_counter() - started
    return result


def knn_only(examples: list[Example], folds: int = 5, index: type = LexicalIndex) -> float:
    """The kNN vote's accuracy alone under the same folds: the floor the LLM must beat."""
    parts = folds_of(examples, folds)
    right = 0
    for part in parts:
        retriever = index([e for other in parts if other is not part for e in other])
        found = retriever([e.name for e in part], NEIGHBOURS)
        right += sum(knn_vote(found[e.name])[0] == e.code for e in part)
    return right / len(examples) if examples else 0.0


def store(
    result: Result, *, model: str, prompt: Prompt, endpoint: str, labelled_file: Path, folds: int, options: dict
) -> CategorizerEvaluation:
    """Keep the result under its producer, for admin and /tag_categorize."""
    return CategorizerEvaluation.objects.create(
        producer=chat_producer(model, prompt.version, endpoint),
        labelled_file=str(labelled_file)[-255:],
        folds=folds,
        tags=len(result.outcomes),
        accuracy=result.accuracy,
        macro_recall=result.macro_recall,
        knn_accuracy=result.knn_accuracy,
        requests=result.requests,
        seconds=result.seconds,
        report={
            "options": options,
            "worst": result.worst(),
            "cuts": result.cuts(),
            "agreement": result.agreement(),
            "warnings": result.warnings[:20],
            "answers": result.answers(),
        },
    )


def latest_evaluations(count: int) -> list[CategorizerEvaluation]:
    """Each producer's latest evaluation, newest first: what /tag_categorize shows."""
    latest = CategorizerEvaluation.objects.order_by("producer_id", "-created_at").distinct("producer_id")
    latest = latest.defer("report")  # every labelled tag's answer: the page shows the figures
    return sorted(latest.select_related("producer"), key=lambda e: e.created_at, reverse=True)[:count]
