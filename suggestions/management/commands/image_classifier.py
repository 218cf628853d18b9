"""Seed 001's image_classifier.py: a title, description, keywords and a descriptive file name per image; each image
is copied to PATH/processed/<name>.<ext> (verified by hash) beside <name>.json. The originals are not touched."""

from pathlib import Path

from django.conf import settings
from django.core.management.base import CommandError
from tqdm import tqdm

from suggestions.services.classifier import classify_image, images_in, processed_folder
from suggestions.services.describe import DescribeOptions, stage_config
from tagsite.ai.base import LLMError
from tagsite.ai.registry import client_for
from tagsite.management.arguments import number_type
from tagsite.management.schema import SchemaCommand
from tagsite.models import LLMEndpoint


class Command(SchemaCommand):
    help = (
        "Seed 001's descriptive rename: ask a VLM for a title, description, keywords and file name per image; copy "
        "each to PATH/processed/<name>.<ext> with <name>.json beside it. The model's file name is sanitised."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="A folder of images")
        parser.add_argument("--recursive", action="store_true", help="Include subfolders (never processed/)")
        parser.add_argument("--image-exts", help="Comma-separated extensions (default: TAGSITE_IMAGE_EXTENSIONS)")
        parser.add_argument("--role", default="title", help="The registry role whose endpoint answers (title)")
        parser.add_argument("--api-url", "--base-url", dest="base_url", help="An OpenAI-compatible base URL")
        parser.add_argument("--backend", choices=LLMEndpoint.Kind.values, help="Endpoint kind for --api-url")
        parser.add_argument("--model", help="Model id")
        parser.add_argument("--api-key", help="API key for --api-url")
        parser.add_argument("--timeout", type=number_type(float, 1), help="Seconds per request")
        parser.add_argument("--max-keywords", type=number_type(int, 1, 100), default=15)
        parser.add_argument("--long-side", type=number_type(int, 64), default=1280, help="Image size sent")

    def handle(self, *args, path, **o):
        root = Path(path).resolve()
        if not root.is_dir():
            raise CommandError(f"not a folder: {path}")
        extensions = settings.IMAGE_EXTENSIONS
        if o["image_exts"]:
            extensions = tuple(f".{ext.strip().lstrip('.').lower()}" for ext in o["image_exts"].split(","))
        options = DescribeOptions(
            roles={"title": o["role"]}, model=o["model"] or "", base_url=o["base_url"] or "",
            backend=o["backend"] or "", api_key=o["api_key"] or "", timeout=o["timeout"],
        )  # fmt: skip
        try:
            config = stage_config("title", options)
            folder = processed_folder(root)
        except (LLMError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        images = images_in(root, tuple(extensions), o["recursive"])
        done = failed = 0
        with client_for(config, "chat", image_long_side=o["long_side"]) as client:
            for image in tqdm(images, desc="classify", unit="image", disable=not images):
                result = classify_image(client, image, folder, o["max_keywords"], o["long_side"])
                if result.error:
                    failed += 1
                    self.stderr.write(f"{image}: {result.error}")
                    continue
                done += 1
                notes = f" ({'; '.join(result.notes)})" if result.notes else ""
                self.stdout.write(f"{image} -> {result.target}{notes}")
        self.stdout.write(f"{done} classified, {failed} failed, into {folder}")
        if failed and not done:
            raise CommandError("no image was classified")
