"""Seed 003's `run`: titles, captions, keywords and descriptions for the images of some folders, as proposals for
review (or, with an explicit --auto-approve, approved by a logged rule and written into the files)."""

import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from django.core.management.base import CommandError

from suggestions.models import STAGES, PromptProfile
from suggestions.services.describe import (
    DescribeAudit,
    DescribeOptions,
    Summary,
    get_profile,
    preflight,
    run_describe_job,
)
from suggestions.tasks import DESCRIBE_ADVICE
from tagsite.ai.base import LLMError
from tagsite.management.arguments import number_type
from tagsite.management.schema import SchemaCommand
from tagsite.models import Image, LLMEndpoint
from tagsite.services.ingest import import_folder, scan_folder
from tagsite.services.jobs import create_job, run_job
from tagsite.services.writeback import audit_folder

STAGE_FLAGS = {"caption": "caption", "keywords": "keyword", "description": "description", "title": "title"}


class Command(SchemaCommand):
    help = (
        "Describe images with a VLM (seed 003): a title, caption, keywords and description per image from each "
        "stage's registry role under a prompt profile. Answers wait for review unless --auto-approve."
    )

    def add_arguments(self, parser):
        inputs = parser.add_argument_group("input")
        inputs.add_argument("--input-dir", action="append", required=True, help="A folder to describe (repeatable)")
        inputs.add_argument("--recursive", action="store_true", help="Include subfolders")
        inputs.add_argument("--image-exts", help="Comma-separated extensions (default: TAGSITE_IMAGE_EXTENSIONS)")
        backend = parser.add_argument_group("backend (override every stage's registry endpoint)")
        backend.add_argument("--backend", choices=LLMEndpoint.Kind.values, help="Endpoint kind for --base-url")
        backend.add_argument("--base-url", help="An OpenAI-compatible base URL, e.g. http://127.0.0.1:1234/v1")
        backend.add_argument("--model", help="Model id for every stage")
        backend.add_argument("--api-key", help="API key for --base-url")
        backend.add_argument("--timeout", type=number_type(float, 1), help="Seconds per request")
        backend.add_argument("--max-new-tokens", type=number_type(int, 16), help="Token limit per answer")
        backend.add_argument("--temperature", type=number_type(float, 0, 2))
        backend.add_argument("--top-p", type=number_type(float, 0, 1))
        stages = parser.add_argument_group("stages")
        for stage, flag in STAGE_FLAGS.items():
            stages.add_argument(f"--{flag}-model", dest=f"{stage}_model", help=f"Model id of the {stage} stage")
        for stage, flag in STAGE_FLAGS.items():
            if stage != "title":
                stages.add_argument(f"--{flag}-role", dest=f"{stage}_role", help=f"Registry role for the {stage} stage")
        stages.add_argument("--stages", default=",".join(STAGES), help=f"Comma-separated subset of {','.join(STAGES)}")
        stages.add_argument("--two-step", action="store_true", help="Caption first; keywords and title see it")
        stages.add_argument("--overwrite", action="store_true", help="Ask again for stages done or approved before")
        prompting = parser.add_argument_group("prompting")
        prompting.add_argument("--prompt-profile", default="default", help="A prompt profile's name")
        prompting.add_argument("--max-keywords", type=number_type(int, 1, 500), help="Overrides the profile's")
        prompting.add_argument("--long-side", type=number_type(int, 64), default=1280, help="Image size sent")
        output = parser.add_argument_group("output")
        output.add_argument("--output-jsonl", help="Also write the JSONL audit here")
        output.add_argument("--summary", help="Also write the Markdown summary here")
        output.add_argument("--batch-size", type=number_type(int, 1), default=500, help="Images per job")
        output.add_argument("--max-workers", type=number_type(int, 1), help="Requests in flight (default: slots)")
        meta = parser.add_argument_group("metadata")
        meta.add_argument("--dry-run", action="store_true", help="Ask and audit; store no proposal, write no file")
        meta.add_argument("--auto-approve", action="store_true", help="Approve by the logged rule describe_images")
        meta.add_argument("--no-meta", action="store_true", help="With --auto-approve: do not write the files")
        meta.add_argument("--backup-originals", action="store_true", help="Keep a copy of each file before writing")
        meta.add_argument("--overwrite-metadata", action="store_true", help="Replace texts the files already carry")
        parser.add_argument("--skip-preflight", action="store_true", help="Do not check the endpoints first")

    def handle(self, *args, **o):
        try:
            profile = get_profile(o["prompt_profile"])
        except PromptProfile.DoesNotExist:
            names = ", ".join(PromptProfile.objects.values_list("name", flat=True))
            raise CommandError(f"no prompt profile {o['prompt_profile']!r} (profiles: {names})")
        try:
            options = DescribeOptions(
                profile=o["prompt_profile"],
                stages=tuple(stage.strip() for stage in o["stages"].split(",") if stage.strip()),
                roles={stage: o[f"{stage}_role"] for stage in STAGES if o.get(f"{stage}_role")},
                models={stage: o[f"{stage}_model"] for stage in STAGES if o.get(f"{stage}_model")},
                model=o["model"] or "",
                base_url=o["base_url"] or "",
                backend=o["backend"] or "",
                api_key=o["api_key"] or "",
                timeout=o["timeout"],
                max_new_tokens=o["max_new_tokens"],
                temperature=o["temperature"],
                top_p=o["top_p"],
                max_keywords=o["max_keywords"],
                max_workers=o["max_workers"],
                long_side=o["long_side"],
                two_step=o["two_step"],
                overwrite=o["overwrite"],
                dry_run=o["dry_run"],
                auto_approve=o["auto_approve"],
                write_metadata=not o["no_meta"],
                backup_originals=o["backup_originals"],
                overwrite_metadata=o["overwrite_metadata"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        writes = o["auto_approve"] and not o["dry_run"] and not o["no_meta"]
        idle = [flag for flag in ("no_meta", "backup_originals", "overwrite_metadata") if o[flag]]
        if idle and not writes:  # accepted for seed 003's command lines, but this run writes no file
            flags = ", ".join("--" + flag.replace("_", "-") for flag in idle)
            self.stderr.write(
                f"note: {flags} ignored: this run writes no file (only --auto-approve without "
                "--dry-run or --no-meta does); approved answers are written by Apply metadata on /suggestions/texts/"
            )
        if not o["skip_preflight"]:
            try:
                problems = preflight(options)
            except LLMError as exc:
                problems = [str(exc)]
            if problems:
                lines = "\n  ".join(problems)
                raise CommandError(f"preflight failed (fix it, or pass --skip-preflight):\n  {lines}")
        exts = o["image_exts"]
        wanted = [f".{ext.strip().lstrip('.').lower()}" for ext in exts.split(",")] if exts else None
        if options.dry_run:  # the files as they are: nothing imported, nothing stored
            selected = self.files(o["input_dir"], o["recursive"], wanted)
        else:
            selected = self.images(o["input_dir"], o["recursive"], wanted)
        if not selected:
            raise CommandError("no images in " + ", ".join(o["input_dir"]))
        total = Summary()
        with tempfile.TemporaryDirectory() as folder:  # the whole run's audit, over all its jobs (batches)
            audit = DescribeAudit(Path(folder), options, profile)
            try:
                for start in range(0, len(selected), o["batch_size"]):
                    batch = selected[start : start + o["batch_size"]]
                    params = {"paths": batch, "image_ids": []} if options.dry_run else {"image_ids": batch}
                    job = create_job("describe_images", params | {"options": asdict(options)})
                    with run_job(job, progress_bar=True, description="describe", advice=DESCRIBE_ADVICE) as progress:
                        total.add(run_describe_job(job, progress, on_image=audit.record))
                    self.stdout.write(f"job #{job.pk}: {job.message}; audit in {audit_folder(job.pk)}")
            finally:
                audit.close(total)
                for wanted_path, name in ((o["output_jsonl"], "audit.jsonl"), (o["summary"], "summary.md")):
                    if wanted_path:
                        shutil.copyfile(Path(folder) / name, wanted_path)
        self.table(total)

    def images(self, folders: list[str], recursive: bool, wanted: list[str] | None) -> list[int]:
        """Import each folder (new and changed files; below it only with `recursive`), then its images."""
        ids: list[int] = []
        for folder in folders:
            root = self.folder(folder)
            import_folder(root, extensions=wanted, recursive=recursive)
            rows = Image.objects.filter(status=Image.Status.OK, path__startswith=os.path.join(root, "")).order_by("pk")
            for pk, path in rows.values_list("pk", "path"):
                if (recursive or os.path.dirname(path) == root) and (
                    not wanted or os.path.splitext(path)[1].lower() in wanted
                ):
                    ids.append(pk)
        return list(dict.fromkeys(ids))

    def files(self, folders: list[str], recursive: bool, wanted: list[str] | None) -> list[str]:
        """A dry run's image files, found as an import would find them but not imported."""
        paths: list[str] = []
        for folder in folders:
            root = self.folder(folder)
            paths += sorted(scan_folder(root, wanted, recursive=recursive).files)
        return list(dict.fromkeys(paths))

    def folder(self, folder: str) -> str:
        root = os.path.abspath(folder)
        if not os.path.isdir(root):
            raise CommandError(f"not a folder: {folder}")
        return root

    def table(self, summary: Summary) -> None:
        self.stdout.write(f"{'stage':<12} {'ok':>6} {'failed':>7} {'re-asked':>9} {'mean s':>7}")
        for stage in (stage for stage in STAGES if stage in summary.stages):
            row = summary.stages[stage]
            runs = row["ok"] + row["failed"]
            mean = summary.seconds[stage] / runs if runs else 0.0
            self.stdout.write(f"{stage:<12} {row['ok']:>6} {row['failed']:>7} {row['re-asked']:>9} {mean:>7.2f}")
