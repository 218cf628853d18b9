"""Embed tag names into the active embedding space (only what is missing or stale), with a job and progress."""

import time

from django.core.management.base import CommandError

from dedupe import services
from dedupe.tasks import ADVICE
from tagsite.ai.base import LLMError
from tagsite.management.arguments import number_type
from tagsite.management.schema import SchemaCommand
from tagsite.services.jobs import create_job, run_job


class Command(SchemaCommand):
    help = (
        "Embed tag names for dedupe and similar-tag lookups: only tags without a vector or renamed since. "
        "Default model: the local all-MiniLM-L6-v2 (offline); --embedding-url for an OpenAI-compatible server."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=number_type(int, 1), default=64, help="Texts per model call.")
        parser.add_argument("--limit", type=number_type(int, 1), help="At most this many tags (most used first).")
        parser.add_argument("--embedding-url", default="", help="OpenAI-compatible server, e.g. http://127.0.0.1:1234")
        parser.add_argument("--embedding-model", default="", help="Model id on that server.")
        parser.add_argument("--prefix", default="", help="Text before each name, e.g. 'clustering: ' for nomic.")
        parser.add_argument("--activate", action="store_true", help="Make this model's space the active one.")

    def handle(self, *args, **options):
        try:
            client = services.client_for_options(options["embedding_url"], options["embedding_model"])
            space = services.space_for(client, options["prefix"], activate=options["activate"])
        except LLMError as exc:
            raise CommandError(str(exc)) from exc
        params = {key: options[key] for key in ("batch_size", "limit", "prefix")}
        job = create_job("embed_tags", {**params, **client.config.described(), "space": space.pk})
        started = time.monotonic()
        with run_job(job, progress_bar=True, description="embedding", advice=ADVICE) as progress, client:
            counts = services.embed_tags(
                client, space, batch_size=options["batch_size"], limit=options["limit"], progress=progress
            )
        seconds = time.monotonic() - started
        rate = counts["embedded"] / seconds if seconds else 0
        self.stdout.write(
            f"Embedded {counts['embedded']} tags with {space.producer} in {seconds:.1f}s ({rate:.0f} tags/s); "
            f"{space.embeddings.count()} tags have a vector in this space{' (active)' if space.active else ''}."
        )
