from django.core.management.base import BaseCommand, CommandError

from suggestions import services


class Command(BaseCommand):
    help = "Import label mappings from a CSV `danbooru_tag,internal_tag_title,action` (action: map or ignore)."

    def add_arguments(self, parser):
        parser.add_argument("csv", help="The CSV file")
        parser.add_argument("--source", default="danbooru", help="Label source the mappings are for")

    def handle(self, *args, **options):
        try:
            result = services.import_tag_mappings(options["csv"], options["source"])
        except services.MappingImportError as exc:
            raise CommandError(str(exc)) from exc
        for name in result["missing"]:
            self.stderr.write(f"missing internal tag: {name}")
        self.stdout.write(
            f"{len(result['created'])} created, {len(result['skipped'])} skipped (already mapped), "
            f"{len(result['missing'])} missing (internal tag not found)"
        )
