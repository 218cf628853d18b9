"""How right the configured categoriser is on a labelled file, cross-validated, stored per producer."""

from pathlib import Path

from django.core.management.base import CommandError

from categorization.evaluation import evaluate, knn_only, store
from categorization.retrieval import LABELLED_FILE, read_labelled
from categorization.services import Prompt, Shape
from tagsite.ai.base import LLMError
from tagsite.ai.registry import client_for, endpoint_config, resolve_role
from tagsite.management.arguments import number_type
from tagsite.management.schema import SchemaCommand
from tagsite.models import LLMEndpoint


class Command(SchemaCommand):
    help = (
        "Run the real categoriser against an endpoint on a labelled tag,category file with k-fold "
        "cross-validation (a tag's examples come from the other folds); print accuracy, macro recall, the worst "
        "categories' confusion, coverage and precision per confidence cut, requests and time; store the result."
    )

    def add_arguments(self, parser):
        target = parser.add_mutually_exclusive_group()
        target.add_argument("--role", default="categorize", help="Registry role whose endpoint is evaluated.")
        target.add_argument("--endpoint", help="A registry endpoint by name (instead of a role).")
        parser.add_argument("--file", type=Path, default=LABELLED_FILE, help="CSV with the columns tag,category.")
        parser.add_argument("--folds", type=number_type(int, 2), default=5)
        parser.add_argument("--subset", type=number_type(int, 1), help="A stratified subset of N tags (slow servers).")
        parser.add_argument("--request-size", type=number_type(int, 1), default=20, help="Tags per request.")
        parser.add_argument("--twice", action="store_true", help="Ask each batch twice, shuffled (self-consistency).")
        parser.add_argument(
            "--shape", choices=[s.value for s in Shape], default=Shape.KEYED.value, help="The request shape."
        )
        parser.add_argument("--no-store", action="store_true", help="Print only.")

    def handle(self, *args, **options):
        try:
            examples = read_labelled(options["file"])
        except (OSError, ValueError) as exc:
            raise CommandError(f"Cannot read the labelled file: {exc}")
        if len(examples) < options["folds"]:
            raise CommandError(f"{options['file']}: {len(examples)} labelled tags, fewer than {options['folds']} folds")
        if options["endpoint"]:
            endpoint = LLMEndpoint.objects.filter(name=options["endpoint"]).first()
            if endpoint is None:
                raise CommandError(f"No LLM endpoint named {options['endpoint']!r} (admin: LLM endpoints)")
            config = endpoint_config(endpoint)
        else:
            try:
                config = resolve_role(options["role"])
            except LLMError as exc:
                raise CommandError(str(exc))
        prompt = Prompt.build(shape=Shape(options["shape"]))
        unknown = sorted({e.code for e in examples} - set(prompt.codes))
        if unknown:
            raise CommandError(f"{options['file']}: unknown categories {', '.join(unknown)}")
        folds = options["folds"]
        self.stdout.write(
            f"Evaluating {config.model} at {config.base_url}, prompt {prompt.version} ({prompt.shape} shape), "
            f"{options['subset'] or len(examples)} of {len(examples)} tags of {options['file']}, {folds} folds"
        )

        def on_fold(number, result):
            self.stdout.write(
                f"  fold {number + 1}/{folds}: {len(result.outcomes)} tags, accuracy {result.accuracy:.3f}"
            )

        try:
            with client_for(config) as client:
                result = evaluate(
                    client,
                    examples,
                    folds=folds,
                    prompt=prompt,
                    request_size=options["request_size"],
                    twice=options["twice"],
                    subset=options["subset"],
                    on_fold=on_fold,
                )
        except LLMError as exc:
            raise CommandError(f"The endpoint failed: {exc}")
        write = self.stdout.write
        tags = len(result.outcomes)
        answered = sum(o.ok for _, o in result.outcomes)
        write(f"accuracy      {result.accuracy:.3f} ({tags} tags, {answered} answered)")
        write(f"macro recall  {result.macro_recall:.3f}")
        knn_all = knn_only(examples, folds)
        write(f"kNN alone     {result.knn_accuracy:.3f} (the labelled neighbours' vote; on all tags {knn_all:.3f})")
        agreement = result.agreement()
        line = f"agreement     LLM and kNN agree on {agreement['agree']:.1%}"
        line += f", right then {agreement['precision_when_agreeing']:.1%}"
        if options["twice"]:
            line += f"; disputed (asked twice) {agreement['disputed']}, right {agreement['disputed_right']}"
        write(line)
        write("worst categories (recall, what their tags were answered instead):")
        for row in result.worst():
            instead = ", ".join(f"{code} {n}" for code, n in row["answered"]) or "-"
            write(f"  {row['category']:<20} {row['recall']:.2f} of {row['tags']:>3}: {instead}")
        write("confidence cut: coverage, precision")
        for row in result.cuts():
            write(f"  >= {row['confidence']:.1f}: {row['coverage']:.1%}, {row['precision']:.1%}")
        rate = tags / result.seconds if result.seconds else 0.0
        write(f"requests {result.requests}, time {result.seconds:.1f}s ({rate:.2f} tags/s)")
        for warning in result.warnings[:5]:
            write(f"warning: {warning}")
        if options["no_store"]:
            return
        options_kept = {key: options[key] for key in ("folds", "subset", "request_size", "twice", "shape")}
        evaluation = store(
            result,
            model=config.model,
            prompt=prompt,
            endpoint=config.name,
            labelled_file=options["file"],
            folds=folds,
            options=options_kept,
        )
        write(f"stored as evaluation #{evaluation.pk} of {evaluation.producer}")
