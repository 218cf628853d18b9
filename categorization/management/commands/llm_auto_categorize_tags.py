"""Seed 000's command: categorise the most used uncategorised tags with the `categorize` LLM role."""

from contextlib import nullcontext

from django.core.management.base import CommandError
from tqdm import tqdm

from categorization.services import Outcome, Prompt, categorize_uncategorized, uncategorized_tags
from categorization.tasks import ADVICE
from tagsite.ai.base import LLMError
from tagsite.ai.registry import check_endpoint, client_for, resolve_role
from tagsite.management.arguments import number_type
from tagsite.management.schema import SchemaCommand
from tagsite.services.jobs import create_job, run_job

RULE = "=" * 70


class Command(SchemaCommand):
    help = "Categorise uncategorised tags (most used first) into the 22 extended categories with an LLM."

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch-size",
            type=number_type(int, 1),
            default=100,
            help="Tags fetched per batch; without --limit, one batch.",
        )
        parser.add_argument("--limit", type=number_type(int, 0), help="Maximum total tags to process.")
        parser.add_argument("--dry-run", action="store_true", help="Ask the LLM but save nothing.")
        parser.add_argument("--skip", type=number_type(int, 0), default=0, help="Skip the first N tags (to resume).")
        parser.add_argument(
            "--request-size", type=number_type(int, 1), help="Tags per LLM request (TAGSITE_CATEGORIZE_REQUEST_SIZE)."
        )
        parser.add_argument("--role", default="categorize", help="Registry role whose endpoint is used.")
        parser.add_argument(
            "--twice", action="store_true", help="Ask each batch twice, shuffled; disagreements wait for review."
        )
        parser.add_argument(
            "--first-pass",
            choices=["knn", "none"],
            help="knn: tags whose labelled neighbours agree strongly get the kNN producer's proposal and are not "
            "asked (the default once tags are categorised here); none: ask the LLM about every tag.",
        )

    def handle(self, *args, **options):
        try:
            config = resolve_role(options["role"])
        except LLMError as exc:
            raise CommandError(str(exc))
        if not uncategorized_tags(config.model, Prompt.build().version)[options["skip"] :].exists():
            skipped = f" after skipping {options['skip']}" if options["skip"] else ""
            self.stdout.write(f"Nothing to do: no uncategorised tags{skipped} (none without a category or a proposal).")
            return
        self.stdout.write(f"{RULE}\nAutomated Tag Categorization using LLM\n{RULE}\n")
        self.stdout.write(f"Endpoint: {config.name} {config.base_url} model {config.model}")
        self.stdout.write(f"Batch size: {options['batch_size']}  Limit: {options['limit'] or '-'}")
        if options["dry_run"]:
            self.stdout.write("DRY RUN MODE - No changes will be saved")
        self.stdout.write("\nTesting LLM connection...")
        for check in check_endpoint(config, options["role"]):
            self.stdout.write(f"  {'✓' if check.ok else '✗'} {check.name}: {check.detail}")
            if not check.ok:
                raise CommandError(f"Failed to connect to LLM: {check.detail}")

        keys = ("batch_size", "limit", "skip", "dry_run", "request_size", "role", "twice", "first_pass")
        params = {**{key: options[key] for key in keys}, **config.described()}
        first_pass = None if options["first_pass"] is None else options["first_pass"] == "knn"
        job = None if options["dry_run"] else create_job("categorize", params)  # a dry run leaves no Job either
        verbose = options["verbosity"] >= 2
        seen = 0

        def show(outcome: Outcome) -> None:
            nonlocal seen
            seen += 1
            tag = outcome.tag
            result = f"✓ {outcome.code} ({outcome.confidence:.2f})" if outcome.ok else f"✗ {outcome.error}"
            if outcome.ok and outcome.knn_code and outcome.knn_code != outcome.code:
                result += f", kNN says {outcome.knn_code}"
            if outcome.disputed:
                result += f", asked again: {outcome.second_code} (for review)"
            tqdm.write(f"[{seen}] {tag.name} (used {tag.usage_count}x) {result}")

        tracked = run_job(job, progress_bar=True, description="categorising", advice=ADVICE) if job else nullcontext()
        with tracked as progress, client_for(config) as client:
            summary = categorize_uncategorized(
                client,
                batch_size=options["batch_size"],
                limit=options["limit"],
                skip=options["skip"],
                dry_run=options["dry_run"],
                request_size=options["request_size"],
                twice=options["twice"],
                first_pass=first_pass,
                progress=progress,
                on_outcome=show if verbose else lambda outcome: None,
            )
        self.stdout.write(f"\n{RULE}\nCategorization Complete\n{RULE}")
        if summary.first_pass:
            self.stdout.write(f"Answered by the kNN first pass: {summary.first_pass} (not asked)")
        self.stdout.write(f"Total processed: {summary.processed}")
        self.stdout.write(f"Successful: {summary.successful} ({summary.cached} from cache)")
        self.stdout.write(f"Failed: {summary.failed}")
        self.stdout.write(f"Success rate: {summary.success_rate:.1f}%")
        self.stdout.write(f"Requests: {summary.requests}" + (f"  Job: #{job.pk}" if job else ""))
        for warning in summary.warnings:
            self.stdout.write(f"Warning: {warning}")
        for outcome in summary.failures[:20]:
            self.stdout.write(f"  failed: {outcome.tag.name}: {outcome.error}")
        if options["dry_run"]:
            self.stdout.write("\nDRY RUN - No changes were saved to the database")
