from django.conf import settings
from django.core.management.base import CommandError

from suggestions import services
from suggestions.models import MLModelVersion
from tagsite.management.arguments import number_type
from tagsite.management.schema import SchemaCommand


class Command(SchemaCommand):
    help = (
        "Per model and label: decisions, precision at the current threshold with its Wilson lower bound, and a "
        "recommended threshold (or turning the label off) that reaches the target precision with confidence."
    )

    def add_arguments(self, parser):
        parser.add_argument("--model", help="Only this model name")
        parser.add_argument(
            "--target-precision", type=number_type(float, 0, 1), default=settings.SUGGESTIONS_TARGET_PRECISION
        )
        parser.add_argument("--apply", action="store_true", help="Set the recommended thresholds, turn labels off")

    def handle(self, *args, **options):
        models = None
        if options["model"]:
            models = MLModelVersion.objects.filter(name=options["model"])
            if not models.exists():
                known = ", ".join(MLModelVersion.objects.order_by("name").values_list("name", flat=True).distinct())
                raise CommandError(f"no model named {options['model']!r} (installed: {known or 'none'})")
        target = options["target_precision"]
        rows = services.review_report(models, target)
        self.stdout.write(
            f"Target precision {target:.2f}; bound: one-sided {services.CONFIDENCE_LEVEL:.0%} Wilson lower bound of "
            "the precision at or above the threshold (few decisions give a low bound, so no change)."
        )
        if not rows:
            self.stdout.write("No suggestions yet: nothing to report.")
            return
        header = ("model", "label", "ok", "no", "pend", "decided", "prec", "bound", "thr", "rec")
        line = "{:<24} {:<28} {:>5} {:>5} {:>5} {:>7} {:>6} {:>6} {:>6} {:>6}"
        self.stdout.write(line.format(*header))
        show = lambda value: "-" if value is None else f"{value:.3f}"  # noqa: E731
        for row in rows:
            current = "off" if row.disabled else show(row.threshold)
            recommended = "off" if row.turn_off else show(row.recommended)
            self.stdout.write(
                line.format(
                    str(row.model_version)[:24], row.label[:28], row.approved, row.rejected, row.pending,
                    row.decided, show(row.precision), show(row.lower_bound), current, recommended,
                )
            )  # fmt: skip
        if options["apply"]:
            applied = services.apply_recommendations(rows)
            for model, (thresholds, turned_off) in applied.items():
                self.stdout.write(f"{model}: set {thresholds} label thresholds, turned {turned_off} labels off")
            if not applied:
                self.stdout.write("Nothing to apply: every label keeps its threshold.")
