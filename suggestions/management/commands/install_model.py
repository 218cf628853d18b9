import json

from django.core.management.base import CommandError

from suggestions import services
from suggestions.models import MLModelVersion
from tagsite.management.schema import SchemaCommand


class Command(SchemaCommand):
    help = "Install a tagger (model.onnx + selected_tags.csv or labels.csv) from a folder or from Hugging Face."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Model name, e.g. wd-vit-tagger-v3")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument(
            "--from", dest="folder", help="A folder with model.onnx and selected_tags.csv (or labels.csv)"
        )
        source.add_argument("--hf-repo", help="A Hugging Face repository, e.g. SmilingWolf/wd-vit-tagger-v3")
        parser.add_argument("--revision", help="Hugging Face revision (branch, tag or commit)")
        parser.add_argument("--model-version", default="", help="Version label (default: the model's sha256 prefix)")
        parser.add_argument(
            "--kind", choices=MLModelVersion.Kind.values, default=MLModelVersion.Kind.WD14, help="custom: a theme model"
        )
        parser.add_argument(
            "--label-source", default="", help="TagMapping source of its labels (default: danbooru, or the name)"
        )
        parser.add_argument("--thresholds", type=json.loads, default=None, help='JSON, e.g. {"general": 0.4}')
        parser.add_argument("--mcut", action="store_true", help="Use MCut thresholds")
        parser.add_argument("--inactive", action="store_true", help="Install without activating")

    def handle(self, *args, **options):
        try:
            folder = options["folder"] or services.download_model(options["hf_repo"], options["revision"])
            model = services.install_model(
                options["name"],
                folder,
                version=options["model_version"],
                kind=options["kind"],
                label_source=options["label_source"],
                thresholds=options["thresholds"],
                use_mcut=options["mcut"],
                activate=not options["inactive"],
                origin=f"hf:{options['hf_repo']}" if options["hf_repo"] else "",
            )
        except services.ModelInstallError as exc:
            raise CommandError(str(exc)) from exc
        batch = f"fixed batch {model.fixed_batch}" if model.fixed_batch else "dynamic batch"
        self.stdout.write(
            self.style.SUCCESS(
                f"Installed {model} ({model.label_count} labels, input {model.input_size}x{model.input_size}, "
                f"{batch}, {'active' if model.active else 'inactive'}) at {model.model_file}"
            )
        )
