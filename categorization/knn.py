"""The nearest-neighbour first pass: tags people already categorised are the labelled set; an uncategorised tag
whose nearest labelled neighbours (tag embeddings, cosine) agree strongly gets a category proposal from the kNN
producer, with the vote's strength as its confidence, and only the rest go to the LLM.

The strength that makes a vote "strong" is calibrated by cross-validation on the labelled tags
(`evaluate_knn`): the lowest strength at which the votes above it are right 90 % of the time. It moves a lot
with the labelled set, so the last measurement is used, else `DEFAULT_THRESHOLD`.
"""

import time
from dataclasses import dataclass

import numpy as np

from categorization.evaluation import folds_of
from categorization.models import CategorizerEvaluation, CategoryProposal, ExtendedCategory, TagCategory
from categorization.retrieval import Example, Neighbour, knn_vote
from categorization.services import NEIGHBOURS, REVIEW_KIND, TagItem, labelled_examples
from dedupe.models import EmbeddingSpace
from dedupe.services import active_space, client_for_options, embed_names, space_for
from tagsite.models import Job, Producer
from tagsite.review import services as review

DEFAULT_THRESHOLD = 0.55  # MiniLM on the 300 shipped tags, 5 folds: 90 % precision from 0.49 (42 % answered)
TARGET_PRECISION = 0.9


class EmbeddingIndex:
    """A `Retriever` over labelled tags by embedding cosine (exact: the labelled set is small), the drop-in
    replacement for the lexical index that `categorization.retrieval` expects."""

    def __init__(self, examples: list[Example], space: EmbeddingSpace | None = None):
        self.examples = list({example.name: example for example in examples}.values())
        self.space = space or active_space()
        self.vectors = embed_names([example.name for example in self.examples], self.space)

    def __call__(self, names: list[str], k: int) -> dict[str, list[Neighbour]]:
        if not names or not self.examples:
            return {name: [] for name in names}
        similarity = embed_names(names, self.space) @ self.vectors.T
        found = {}
        for row, name in enumerate(names):
            order = np.argsort(-similarity[row], kind="stable")[: k + 1]
            found[name] = [
                Neighbour(self.examples[i], max(0.0, min(1.0, float(similarity[row, i]))))
                for i in order
                if self.examples[i].name != name
            ][:k]
        return found


def default_space() -> EmbeddingSpace:
    """The active embedding space, else the embed role's (the local model offline), made active."""
    space = active_space()
    if space is None:
        with client_for_options() as client:
            space = space_for(client)
    return space


def producer(space: EmbeddingSpace) -> Producer:
    """The kNN first pass's producer: the embedding model it votes with, and the number of neighbours."""
    return Producer.objects.get_or_create(
        kind=Producer.Kind.EMBEDDING, name=f"knn {space.producer.name}", version="", prompt_version=f"k{NEIGHBOURS}"
    )[0]


def has_labelled_tags() -> bool:
    """The first pass is the default once people have categorised tags here (or imported a labelled set)."""
    return TagCategory.objects.exists()


def threshold(space: EmbeddingSpace) -> float:
    """The last cross-validated 90 %-precision strength for this model, else the default."""
    evaluation = CategorizerEvaluation.objects.filter(producer=producer(space)).first()
    measured = evaluation.report.get("threshold") if evaluation else None
    return measured if measured is not None else DEFAULT_THRESHOLD


def first_pass(
    tags: list[TagItem], *, job: Job | None = None, dry_run: bool = False, strength: float | None = None
) -> tuple[list[tuple[TagItem, str, float]], list[TagItem]]:
    """Propose categories for the tags whose labelled neighbours agree at or above `strength` (default: the
    calibrated threshold); returns (answered: tag, code, strength) and the tags left for the LLM."""
    if not tags:
        return [], []
    space = default_space()
    cut = threshold(space) if strength is None else strength
    neighbours = EmbeddingIndex(labelled_examples(), space)([t.name for t in tags], NEIGHBOURS)
    answered, rest = [], []
    for tag in tags:
        code, vote = knn_vote(neighbours.get(tag.name, []))
        if code and vote >= cut:
            answered.append((tag, code, vote))
        else:
            rest.append(tag)
    if answered and not dry_run:
        categories = {c.code: c for c in ExtendedCategory.objects.filter(code__in={code for _, code, _ in answered})}
        made_by = producer(space)
        CategoryProposal.objects.bulk_create(
            [
                CategoryProposal(
                    tag_id=tag.pk,
                    category=categories[code],
                    knn_category=categories[code],
                    confidence=round(vote, 3),
                    producer=made_by,
                    job=job,
                )
                for tag, code, vote in answered
            ],
            ignore_conflicts=True,  # a tag with a pending proposal keeps it
        )
        new = CategoryProposal.objects.filter(
            tag_id__in=[tag.pk for tag, _, _ in answered], producer=made_by, status=CategoryProposal.Status.PENDING
        )
        review.auto_approve(REVIEW_KIND, new)
    return answered, rest


@dataclass
class KnnEvaluation:
    votes: list[tuple[Example, str, float]]  # (labelled tag, vote, strength)
    seconds: float

    @property
    def accuracy(self) -> float:
        return sum(e.code == code for e, code, _ in self.votes) / len(self.votes) if self.votes else 0.0

    def at(self, cut: float) -> tuple[float, float]:
        """(coverage, precision) of the votes at or above a strength."""
        kept = [(e, code) for e, code, vote in self.votes if code and vote >= cut]
        precision = sum(e.code == code for e, code in kept) / len(kept) if kept else 0.0
        return len(kept) / (len(self.votes) or 1), precision

    def threshold(self, target: float = TARGET_PRECISION) -> float | None:
        """The lowest strength whose votes at or above it reach the target precision (with at least 10 votes),
        so the first pass answers as many tags as it can at that precision."""
        for cut in sorted({round(vote, 3) for _, _, vote in self.votes}):
            coverage, precision = self.at(cut)
            if precision >= target and coverage * len(self.votes) >= 10:
                return cut
        return None


def evaluate(examples: list[Example], folds: int = 5, space: EmbeddingSpace | None = None) -> KnnEvaluation:
    """Each fold's tags vote from the other folds' labelled neighbours only (a tag is never its own)."""
    started = time.perf_counter()
    space = space or default_space()
    parts = folds_of(examples, folds)
    votes = []
    for part in parts:
        index = EmbeddingIndex([e for other in parts if other is not part for e in other], space)
        found = index([e.name for e in part], NEIGHBOURS)
        votes += [(e, *knn_vote(found[e.name])) for e in part]
    return KnnEvaluation(votes, time.perf_counter() - started)


def store(result: KnnEvaluation, space: EmbeddingSpace, labelled_file: str, folds: int) -> CategorizerEvaluation:
    cut = result.threshold()
    coverage, precision = result.at(cut) if cut is not None else (0.0, 0.0)
    cuts = [dict(zip(("strength", "coverage", "precision"), (c, *result.at(c)), strict=True)) for c in CUTS]
    return CategorizerEvaluation.objects.create(
        producer=producer(space),
        labelled_file=labelled_file,
        folds=folds,
        tags=len(result.votes),
        accuracy=result.accuracy,
        macro_recall=_macro_recall(result),
        knn_accuracy=result.accuracy,
        requests=0,
        seconds=result.seconds,
        report={"threshold": cut, "coverage": coverage, "precision": precision, "cuts": cuts},
    )


CUTS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _macro_recall(result: KnnEvaluation) -> float:
    codes = {e.code for e, _, _ in result.votes}
    recalls = [
        sum(code == e.code for e, code, _ in result.votes if e.code == c) / sum(e.code == c for e, _, _ in result.votes)
        for c in codes
    ]
    return sum(recalls) / len(recalls) if recalls else 0.0
