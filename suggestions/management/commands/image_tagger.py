from django.core.management.base import CommandError

from suggestions.services.oneshot import RULE_NAME, tag_and_write
from tagsite.management.schema import SchemaCommand
from tagsite.services.jobs import summarize_counts


class Command(SchemaCommand):
    help = (
        "Tag and write in one go (seed 001's image_tagger): import PATH, run the active taggers, approve their "
        f"suggestions by the explicit, logged rule '{RULE_NAME}', and write the tags into the files."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="A folder (and below) or one image file")
        parser.add_argument(
            "--append-tags", action="store_true", help="Merge with the file's keywords (default: replace)"
        )
        parser.add_argument(
            "--min-confidence",
            type=float,
            default=0.0,
            help="Approve suggestions at or above this confidence (default 0: all the taggers' thresholds let through)",
        )

    def handle(self, *args, path, append_tags, min_confidence, **options):
        failures = []
        try:
            counts = tag_and_write(
                path,
                append=append_tags,
                min_confidence=min_confidence,
                on_result=lambda result: result.error and failures.append(f"{result.path}: {result.error}"),
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(summarize_counts(counts) or "nothing to do"))
        for line in failures:
            self.stdout.write(f"  {line}")
