from django.core.management.base import CommandError

from suggestions import services
from suggestions.tasks import ADVICE
from tagsite.management.arguments import number_type
from tagsite.management.schema import SchemaCommand
from tagsite.services.jobs import create_job, run_job


class Command(SchemaCommand):
    help = "Suggest tags for images that active models have not processed yet (the backlog)."

    def add_arguments(self, parser):
        parser.add_argument("--model", help="Only this model name (default: every active model)")
        parser.add_argument("--batch-size", type=number_type(int, 1), help="Images per inference batch")
        parser.add_argument("--limit", type=number_type(int, 0), help="At most this many images per model")
        parser.add_argument("--skip", type=number_type(int, 0), default=0, help="Skip the first N of the backlog")
        parser.add_argument("--dry-run", action="store_true", help="Infer and print, store nothing")

    def handle(self, *args, **options):
        models = list(services.active_models(options["model"]))
        if not models:
            raise CommandError("no active model" + (f" named {options['model']}" if options["model"] else ""))
        params = {key: options[key] for key in ("batch_size", "limit", "skip", "dry_run")}
        for model in models:
            job = create_job("suggest_tags", {"model": str(model), **params})
            with run_job(job, progress_bar=True, description=str(model), advice=ADVICE) as progress:
                services.tag_backlog([model], progress, **params)
            self.stdout.write(f"{model}: {job.message}{' (dry run: nothing stored)' if options['dry_run'] else ''}")
