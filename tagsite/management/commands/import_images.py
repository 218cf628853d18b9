from django.core.management.base import CommandError

from tagsite.management.schema import SchemaCommand
from tagsite.services.ingest import ImportRefused, import_folder
from tagsite.services.jobs import create_job, run_job, summarize_counts
from tagsite.tasks import IMPORT_ADVICE


class Command(SchemaCommand):
    help = (
        "Import a folder recursively: new, changed, moved and deleted files are handled; unchanged ones cost nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument(
            "--extensions", help="Comma-separated file extensions, e.g. .jpg,.png (default: TAGSITE_IMAGE_EXTENSIONS)"
        )

    def handle(self, *args, path, extensions, **options):
        extension_list = [e if e.startswith(".") else f".{e}" for e in extensions.split(",")] if extensions else None
        job = create_job("import_images", {"path": path, "extensions": extension_list})
        try:
            bar = options["verbosity"] > 0
            with run_job(job, progress_bar=bar, description="import", advice=IMPORT_ADVICE) as progress:
                counts = import_folder(path, progress, extension_list)
        except ImportRefused as exc:
            raise CommandError(str(exc)) from exc
        summary = summarize_counts(counts) or "nothing to do"
        self.stdout.write(self.style.SUCCESS(f"Job #{job.pk}: {summary}"))
        for error in job.errors:
            self.stdout.write(f"  {error['item']!r}: {error['error']}")
