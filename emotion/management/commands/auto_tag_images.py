"""Seed 004's `auto_tag_images.py` as a command: label the faces of a folder's images and write its CSV."""

import os
from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError

from emotion import services
from emotion.tasks import ADVICE
from tagsite.ai.base import LLMError
from tagsite.management.arguments import number_type
from tagsite.management.schema import SchemaCommand
from tagsite.services.ingest import ImportRefused, import_folder
from tagsite.services.jobs import create_job, run_job, summarize_counts
from tagsite.tasks import IMPORT_ADVICE


def default_output(folder: str) -> Path:
    """Seed 004 writes `dataset/llm_labels.csv` beside the folder it labels."""
    return Path(os.path.abspath(folder)).parent / "dataset" / "llm_labels.csv"


class Command(SchemaCommand):
    help = (
        "Label one emotion per face image in FOLDER (imported first; recursive) and write seed 004's CSV "
        "filename,path,emotion,confidence."
    )

    def add_arguments(self, parser):
        parser.add_argument("folder")
        parser.add_argument("--output", help="CSV path (default: dataset/llm_labels.csv beside FOLDER)")
        parser.add_argument(
            "--backend", choices=services.BACKENDS, help="local (offline) or llm (the emotion role's endpoint)"
        )
        parser.add_argument(
            "--chat-input",
            choices=services.CHAT_INPUTS,
            help="llm backend: send each detected face's crop (faces; an image without one is not sent) or the "
            "whole image, undetected (image; the model says whether it shows a face). Default: "
            "TAGSITE_EMOTION_CHAT_INPUT",
        )
        parser.add_argument("--limit", type=number_type(int, 1), help="At most this many images")
        parser.add_argument("--dry-run", action="store_true", help="Read and print the labels, store nothing")
        parser.add_argument("--only-approved", action="store_true", help="The CSV holds approved labels only")
        parser.add_argument(
            "--no-recursive", dest="recursive", action="store_false", help="Only the folder's own files, not below"
        )

    def handle(self, *args, folder, **options):
        if not os.path.isdir(folder):
            raise CommandError(f"{folder} is not a folder")
        folder = os.path.abspath(folder)
        backend = options["backend"] or settings.EMOTION_BACKEND
        output = Path(options["output"]) if options["output"] else default_output(folder)
        bar = options["verbosity"] > 0
        if options["chat_input"] and backend != "llm":
            raise CommandError("--chat-input is for the llm backend (the local one classifies detected faces)")
        if options["dry_run"]:
            return self.dry_run(folder, backend, options)
        job = create_job("import_images", {"path": folder, "recursive": options["recursive"]})
        try:
            with run_job(job, progress_bar=bar, description="import", advice=IMPORT_ADVICE) as progress:
                counts = import_folder(folder, progress, recursive=options["recursive"])
        except ImportRefused as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Import: {summarize_counts(counts) or 'nothing new'}")
        params = {"backend": backend, "folder": folder, "limit": options["limit"], "recursive": options["recursive"]}
        if options["chat_input"]:
            params["chat_input"] = options["chat_input"]
        job = create_job("emotion", params)
        try:
            with run_job(job, progress_bar=bar, description="emotion", advice=ADVICE) as progress:
                summary = services.run(job, progress)
        except LLMError as exc:
            raise CommandError(f"Job #{job.pk} stopped: {exc}") from exc
        images = services.select_images(folder, limit=options["limit"], recursive=options["recursive"])
        rows = services.write_csv(
            output, services.image_labels(options["only_approved"], image_ids=[image.pk for image in images])
        )
        self.stdout.write(self.style.SUCCESS(f"Job #{job.pk}: {summary.line()}"))
        for error in job.errors[:20]:
            self.stdout.write(f"  {error['item']!r}: {error['error']}")
        which = "approved " if options["only_approved"] else ""
        self.stdout.write(f"Wrote {rows} {which}labels to {output}")

    def dry_run(self, folder: str, backend: str, options) -> None:
        """Read the files where they are (nothing imported, nothing stored) and print each face's label."""
        paths = services.image_files(folder, options["recursive"])[: options["limit"] or None]
        try:
            with services.open_labeller(backend, chat_input=options["chat_input"]) as (labeller, threads, _):
                for path, reading in sorted(services.read_files(labeller, paths, threads=threads)):
                    if reading.error:
                        self.stdout.write(f"{path}: failed: {reading.error}")
                    elif not reading.faces:
                        self.stdout.write(f"{path}: no face")
                    for index, face in enumerate(reading.faces):
                        said = f"{face.label} {face.confidence:.2f}" if face.label else f"no label ({face.note})"
                        self.stdout.write(f"{path}: face {index} {list(face.face.box)}: {said}")
        except LLMError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"Dry run: {len(paths)} files read, nothing stored")
