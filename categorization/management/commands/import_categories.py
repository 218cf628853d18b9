"""Import a labelled `tag,category` CSV (e.g. the shipped starter set) as people's categories."""

from collections import defaultdict
from pathlib import Path

from django.core.management.base import CommandError
from django.db import transaction

from categorization.models import ExtendedCategory
from categorization.retrieval import LABELLED_FILE, read_labelled
from categorization.services import set_category
from tagsite.management.schema import SchemaCommand
from tagsite.models import Proposal
from tagsite.services.tags import get_or_create_tags


class Command(SchemaCommand):
    help = (
        "Categorise tags from a tag,category CSV (created when missing, aliases applied): the labelled set the "
        f"kNN first pass and the LLM's examples learn from. Default: the shipped 300 tags ({LABELLED_FILE.name})."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", nargs="?", default=str(LABELLED_FILE), help="A CSV with the columns tag,category.")

    def handle(self, *args, file, **options):
        try:
            examples = read_labelled(Path(file))
        except (OSError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        categories = {c.code: c for c in ExtendedCategory.objects.all()}
        unknown = sorted({e.code for e in examples} - set(categories))
        if unknown:
            raise CommandError(f"unknown categories in {file}: {', '.join(unknown)} (codes like 03_Body_Face)")
        tags = get_or_create_tags([e.name for e in examples])
        by_category = defaultdict(list)
        for example in examples:
            if example.name in tags:
                by_category[example.code].append(tags[example.name].pk)
        with transaction.atomic():
            for code, tag_ids in by_category.items():
                set_category(tag_ids, categories[code], None, via=Proposal.Via.COMMAND)
        count = sum(len(ids) for ids in by_category.values())
        self.stdout.write(f"{count} tags categorised from {file} ({len(by_category)} categories).")
