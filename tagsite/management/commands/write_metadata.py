from django.core.management.base import CommandError

from tagsite.management.schema import SchemaCommand
from tagsite.services.jobs import create_job, run_job, summarize_counts
from tagsite.services.writeback import APPEND, REPLACE, WRITE_ADVICE, audit_folder, run_write_job


class Command(SchemaCommand):
    help = (
        "Write approved tags (and their categories as hierarchical keywords) into the image files or XMP sidecars: "
        "a verified temporary copy renamed over the original, never a partial file."
    )

    def add_arguments(self, parser):
        parser.add_argument("ids", nargs="*", type=int, help="Image ids")
        parser.add_argument(
            "--all-dirty", action="store_true", help="Every image whose tags changed since its last write"
        )
        parser.add_argument("--query", default="", help="A search: `tag other_tag -not_this ~maybe`")
        parser.add_argument("--folder", default="", help="Every image in this folder and below")
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument(
            "--append", dest="mode", action="store_const", const=APPEND, help="Merge with the file's keywords"
        )
        mode.add_argument(
            "--replace", dest="mode", action="store_const", const=REPLACE, help="tagsite's list (default)"
        )
        parser.add_argument("--sidecar", action="store_true", help="XMP sidecars only; originals are never touched")
        parser.add_argument("--backup-originals", action="store_true", help="Keep a copy under var/metadata/backups/")
        parser.add_argument(
            "--overwrite-metadata", action="store_true", help="Replace even when that drops what the file carries"
        )
        parser.add_argument("--dry-run", action="store_true", help="Show each file's changes, write nothing")

    def handle(self, *args, ids, all_dirty, query, folder, **options):
        params = {
            "selection": {"ids": ids, "query": query, "folder": folder, "all_dirty": all_dirty},
            "options": {
                "mode": options["mode"] or REPLACE,
                "sidecar_only": options["sidecar"],
                "backup": options["backup_originals"],
                "overwrite": options["overwrite_metadata"],
                "dry_run": options["dry_run"],
            },
        }
        if not (ids or all_dirty or query or folder):
            raise CommandError("name images to write: ids, --query, --folder or --all-dirty")
        job = create_job("write_metadata", params)
        bar = options["verbosity"] > 0
        show = self.show_diff if options["dry_run"] else None
        with run_job(job, progress_bar=bar, description="write metadata", advice=WRITE_ADVICE) as progress:
            counts = run_write_job(job, progress, on_result=show)
        summary = summarize_counts(counts) or "nothing to do"
        self.stdout.write(self.style.SUCCESS(f"Job #{job.pk}: {summary}"))
        for error in job.errors:
            self.stdout.write(f"  {error['item']}: {error['error']}")
        folder = audit_folder(job.pk)
        self.stdout.write(f"Audit: {folder}/audit.jsonl and {folder}/summary.md")

    def show_diff(self, result) -> None:
        """A dry run's report of one file: each field that would change, before -> after."""
        self.stdout.write(f"{result.path} [{result.status}]{': ' + result.error if result.error else ''}")
        for name, (before, after) in result.diff().items():
            self.stdout.write(f"  {name}: {before} -> {after}")
