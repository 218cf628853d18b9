"""Seed 004's CSV from the database: one label per image (its largest face's)."""

import csv

from django.core.management.base import CommandError

from emotion import services
from tagsite.management.schema import SchemaCommand


class Command(SchemaCommand):
    help = "Write the CSV filename,path,emotion,confidence: approved labels (default) or every label not rejected."

    def add_arguments(self, parser):
        parser.add_argument("--output", required=True, help="CSV path ('-' for standard output)")
        parser.add_argument("--all", action="store_true", help="Pending labels too, not only approved ones")

    def handle(self, *args, output, **options):
        labels = services.image_labels(only_approved=not options["all"])
        if output == "-":
            writer = csv.writer(self.stdout)
            for row in services.csv_rows(labels):
                writer.writerow(row)
            return
        try:
            rows = services.write_csv(output, labels)
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from exc
        self.stdout.write(self.style.SUCCESS(f"Wrote {rows} labels to {output}"))
