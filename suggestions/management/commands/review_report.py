from django.conf import settings
from django.core.management.base import BaseCommand

from suggestions import services
from suggestions.models import MLModelVersion
from tagsite.management.arguments import number_type


class Command(BaseCommand):
    help = "Per model and label: approvals, rejections, precision at the threshold, and a threshold for a target."

    def add_arguments(self, parser):
        parser.add_argument("--model", help="Only this model name")
        parser.add_argument(
            "--target-precision", type=number_type(float, 0, 1), default=settings.SUGGESTIONS_TARGET_PRECISION
        )
        parser.add_argument("--apply", action="store_true", help="Set the recommended thresholds on the models")

    def handle(self, *args, **options):
        models = MLModelVersion.objects.filter(name=options["model"]) if options["model"] else None
        rows = services.review_report(models, options["target_precision"])
        header = ("model", "label", "ok", "no", "pend", "thr", "prec", "rec")
        self.stdout.write("{:<28} {:<28} {:>5} {:>5} {:>5} {:>6} {:>6} {:>6}".format(*header))
        show = lambda value: "-" if value is None else f"{value:.2f}"  # noqa: E731
        recommended: dict = {}
        for row in rows:
            self.stdout.write(
                f"{str(row.model_version):<28.28} {row.label:<28.28} {row.approved:>5} {row.rejected:>5} "
                f"{row.pending:>5} {row.threshold:>6.2f} {show(row.precision):>6} {show(row.recommended):>6}"
            )
            if row.recommended is not None and row.recommended != row.threshold:
                recommended.setdefault(row.model_version, {})[row.label] = row.recommended
        if options["apply"]:
            for model, thresholds in recommended.items():
                services.apply_thresholds(model, thresholds)
                self.stdout.write(f"{model}: set {len(thresholds)} label thresholds")
