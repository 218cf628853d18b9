from pathlib import Path

from django.core.management.base import CommandError

from tagsite.management.arguments import number_type
from tagsite.management.schema import SchemaCommand
from tagsite.services.demo import TAGS_CSV, DemoRefused, DemoSchemaError, seed_demo


class Command(SchemaCommand):
    help = (
        "Fill the database with a realistic demo library (Danbooru tags with real usage, two model versions, "
        "mostly pending suggestions, category proposals, jobs) for benchmarks. Refuses a database with real images."
    )

    def add_arguments(self, parser):
        parser.add_argument("--images", type=number_type(int, 1, 10_000_000), default=100_000)
        parser.add_argument("--suggestions", type=number_type(int, 0, 100_000_000), default=1_000_000)
        parser.add_argument("--reset", action="store_true", help="Empty the library tables first.")
        parser.add_argument("--force", action="store_true", help="Run even though the database holds real images.")
        parser.add_argument("--seed", type=number_type(int, 0), default=9, help="Random seed (same seed, same data).")
        parser.add_argument("--tags", type=Path, default=TAGS_CSV, help="The Danbooru tag list (CSV).")

    def handle(self, *args, images, suggestions, reset, force, seed, tags, **options):
        if not tags.is_file():
            raise CommandError(f"Tag list not found: {tags}")
        report = self.stdout.write if options["verbosity"] > 0 else lambda text: None
        try:
            counts = seed_demo(images, suggestions, reset=reset, force=force, seed=seed, tags_csv=tags, report=report)
        except (DemoRefused, DemoSchemaError) as exc:
            raise CommandError(str(exc)) from exc
        summary = ", ".join(f"{value:,} {key}" for key, value in counts.items())
        self.stdout.write(self.style.SUCCESS(f"Demo library: {summary}"))
