from django.core.management.base import CommandError

from suggestions import services
from suggestions.models import MLModelVersion, TagMapping
from tagsite.management.schema import SchemaCommand


class Command(SchemaCommand):
    help = "Import label mappings from a CSV `danbooru_tag,internal_tag_title,action` (action: map or ignore)."

    def add_arguments(self, parser):
        parser.add_argument("csv", help="The CSV file")
        parser.add_argument("--source", default="danbooru", help="Label source the mappings are for")
        parser.add_argument(
            "--replace",
            action="store_true",
            help="Update labels already mapped (such as the same-name mappings a tagging run made on its own)",
        )

    def handle(self, *args, **options):
        sources = {"danbooru", *MLModelVersion.objects.values_list("label_source", flat=True)}
        sources |= set(TagMapping.objects.values_list("source", flat=True).distinct())
        if options["source"] not in sources:  # a misspelt source would import mappings no model ever reads
            known = ", ".join(sorted(sources))
            raise CommandError(f"no installed model reads labels from source {options['source']!r} (sources: {known})")
        try:
            result = services.import_tag_mappings(options["csv"], options["source"], replace=options["replace"])
        except services.MappingImportError as exc:
            raise CommandError(str(exc)) from exc
        for name in result["missing"]:
            self.stderr.write(f"missing internal tag: {name}")
        automatic = len(result["automatic"])
        if options["replace"]:
            done = (
                f"{len(result['replaced'])} replaced ({automatic} of them made automatically by a tagging run), "
                f"{len(result['unchanged'])} unchanged"
            )
        else:
            done = f"{len(result['skipped'])} skipped (already mapped"
            done += f"; {automatic} made automatically by a tagging run: --replace updates them)" if automatic else ")"
        self.stdout.write(
            f"{len(result['created'])} created, {done}, {len(result['missing'])} missing (internal tag not found)"
        )
