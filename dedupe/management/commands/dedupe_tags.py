"""Seed 001's tag_deduplicator: find near-duplicate tags, write the JSON report, propose merges for review."""

import json
import time
from pathlib import Path

from django.core.management.base import CommandError

from dedupe import services
from dedupe.tasks import ADVICE
from tagsite.ai.base import LLMError
from tagsite.management.arguments import number_type
from tagsite.management.schema import SchemaCommand
from tagsite.services.jobs import create_job, run_job

REPORT = "tag_deduplication_report_embedding.json"


class Command(SchemaCommand):
    help = (
        "Cluster near-duplicate tags (lexical keys, known aliases, embedding similarity with complete linkage and "
        "sibling guards), write a JSON report and propose each cluster as a merge for review. Tags not embedded "
        "yet are embedded first. Nothing merges until a moderator approves."
    )

    def add_arguments(self, parser):
        parser.add_argument("folder", nargs="?", help="Only the tags of the images under this folder.")
        parser.add_argument("--dry-run", action="store_true", help="Write the report, propose nothing.")
        parser.add_argument(
            "--similarity-threshold",
            type=number_type(float, 0, 1),
            default=services.DEFAULT_THRESHOLD,
            help=f"Cosine similarity to join a cluster (seed 001's {services.DEFAULT_THRESHOLD}; "
            f"{services.RECOMMENDED_THRESHOLD} recommended for the local MiniLM model).",
        )
        parser.add_argument("--min-cluster-size", type=number_type(int, 2), default=2, help="Smallest cluster kept.")
        parser.add_argument("--batch-size", type=number_type(int, 1), default=100, help="Texts per embedding call.")
        parser.add_argument("--embedding-url", default="", help="OpenAI-compatible server (default: the embed role).")
        parser.add_argument("--embedding-model", default="", help="Model id on that server.")
        parser.add_argument("--prefix", default="", help="Text before each name, e.g. 'clustering: ' for nomic.")
        parser.add_argument("--report", default=REPORT, help=f"Where the JSON report goes (default {REPORT}).")

    def handle(self, *args, folder=None, **options):
        threshold = options["similarity_threshold"]
        tag_ids = services.scope_tag_ids(folder) if folder else None
        if folder and not tag_ids:
            raise CommandError(f"no tagged images under {folder}")
        try:
            client = services.client_for_options(options["embedding_url"], options["embedding_model"])
            space = services.space_for(client, options["prefix"], activate=bool(options["embedding_url"]))
        except LLMError as exc:
            raise CommandError(str(exc)) from exc
        params = {"threshold": threshold, "min_cluster_size": options["min_cluster_size"], "folder": folder or ""}
        job = None if options["dry_run"] else create_job("dedupe_tags", {**params, "space": space.pk})
        started = time.monotonic()
        with client:
            embedded = services.embed_tags(client, space, batch_size=options["batch_size"], tag_ids=tag_ids)
        clusters = services.find_clusters(
            space, threshold=threshold, min_cluster_size=options["min_cluster_size"], tag_ids=tag_ids
        )
        seconds = time.monotonic() - started
        report = services.report(clusters, threshold=threshold, space=space, seconds=seconds, files=True)
        Path(options["report"]).write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
        proposed = []
        if job is not None:
            with run_job(job, advice=ADVICE) as progress:
                progress.set_total(len(clusters))
                proposed = services.propose(clusters, space.producer, job)
                progress.advance(len(clusters), clusters=len(clusters), proposed=len(proposed))
        for cluster in clusters[:20] if options["verbosity"] >= 1 else ():
            names = ", ".join(f"{t.name} ({cluster.similarity[t.id]:.2f})" for t in cluster.members[1:])
            self.stdout.write(f"  {cluster.representative.name} <- {names}")
        self.stdout.write(
            f"{len(clusters)} clusters ({report['tags_merged']} tags would merge) at similarity {threshold} in "
            f"{seconds:.1f}s ({embedded['embedded']} tags embedded first); report: {options['report']}; "
            + ("dry run: nothing proposed." if options["dry_run"] else f"{len(proposed)} merge proposals to review.")
        )
