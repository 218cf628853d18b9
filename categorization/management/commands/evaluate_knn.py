"""How good the kNN first pass is: accuracy and coverage by cross-validation on a labelled file, and the vote
strength that reaches 90 % precision (stored: the first pass uses it)."""

from pathlib import Path

from django.core.management.base import CommandError

from categorization import knn
from categorization.retrieval import LABELLED_FILE, read_labelled
from tagsite.ai.base import LLMError
from tagsite.management.arguments import number_type
from tagsite.management.schema import SchemaCommand


class Command(SchemaCommand):
    help = (
        "Cross-validate the kNN first pass (embedding neighbours' vote) on labelled tags: top-1 accuracy, "
        "coverage and precision per vote strength, and the strength that reaches 90 % precision, which the "
        "first pass then uses."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", nargs="?", default=str(LABELLED_FILE), help="A tag,category CSV.")
        parser.add_argument("--folds", type=number_type(int, 2, 20), default=5)

    def handle(self, *args, file, folds, **options):
        try:
            examples = read_labelled(Path(file))
            space = knn.default_space()
            result = knn.evaluate(examples, folds, space)
        except (OSError, ValueError, LLMError) as exc:
            raise CommandError(str(exc)) from exc
        evaluation = knn.store(result, space, Path(file).name, folds)
        self.stdout.write(
            f"kNN first pass with {space.producer.name}, {folds} folds on {len(examples)} labelled tags: "
            f"top-1 accuracy {result.accuracy:.3f}, macro recall {evaluation.macro_recall:.3f}"
        )
        for row in evaluation.report["cuts"]:
            self.stdout.write(
                f"  strength >= {row['strength']:.1f}: coverage {row['coverage']:.3f}, precision {row['precision']:.3f}"
            )
        cut = evaluation.report["threshold"]
        if cut is None:
            self.stdout.write("No strength reaches 90 % precision: the first pass answers nothing (all to the LLM).")
        else:
            self.stdout.write(
                f"90 % precision from strength {cut:.3f}: {evaluation.report['coverage']:.1%} of the tags answered "
                f"(precision {evaluation.report['precision']:.3f}); the first pass uses it from now on."
            )
