"""Installing taggers: a model folder (or a Hugging Face download) copied in, its graph and labels checked."""

import csv
import os
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import onnx
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.text import slugify

from suggestions.models import (
    MLModelVersion,
    validate_category_thresholds,
)
from tagsite.ai.onnx import read_input_shape
from tagsite.models import Tag
from tagsite.services.ingest import file_sha256

MODEL_FILE = "model.onnx"
LABEL_FILES = ("selected_tags.csv", "labels.csv")


class ModelInstallError(Exception):
    """A model that cannot be installed: files missing, not the WD14 contract, or not downloadable."""


def download_model(repo_id: str, revision: str | None = None) -> Path:
    """Fetch model.onnx and selected_tags.csv from Hugging Face into its cache; needs the network."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        folder = snapshot_download(repo_id, revision=revision, allow_patterns=[MODEL_FILE, *LABEL_FILES])
    except (HfHubHTTPError, OSError) as exc:
        raise ModelInstallError(
            f"cannot download {repo_id} from Hugging Face: {type(exc).__name__}: {exc}\n"
            "The machine looks offline (or the repository does not exist). Download model.onnx and "
            "selected_tags.csv on a connected machine, then run: install_model NAME --from DIR"
        ) from exc
    return Path(folder)


def install_model(
    name: str,
    source_dir: str | Path,
    *,
    version: str = "",
    kind: str = MLModelVersion.Kind.WD14,
    label_source: str = "",
    thresholds: dict[str, float] | None = None,
    use_mcut: bool = False,
    activate: bool = True,
    origin: str = "",
) -> MLModelVersion:
    """Copy a model folder into the models directory and register it; shape facts come from the graph."""
    thresholds = {**settings.SUGGESTIONS_DEFAULT_THRESHOLDS, **checked_thresholds(thresholds)}
    source_dir = Path(source_dir)
    model_path = source_dir / MODEL_FILE
    labels_path = next((source_dir / f for f in LABEL_FILES if (source_dir / f).is_file()), None)
    if not model_path.is_file() or labels_path is None:
        raise ModelInstallError(f"{source_dir} needs {MODEL_FILE} and one of {', '.join(LABEL_FILES)}")
    sha256 = file_sha256(model_path)
    size, fixed_batch, outputs = read_graph_shape(model_path)
    labels = read_labels(str(labels_path))
    if outputs is not None and outputs != len(labels.names):
        raise ModelInstallError(f"the model has {outputs} outputs but {labels_path.name} lists {len(labels.names)}")
    version = version or sha256[:12]
    target = Path(settings.SUGGESTIONS_MODELS_DIR) / slugify(name) / slugify(version)
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_path, target / MODEL_FILE)
    shutil.copyfile(labels_path, target / labels_path.name)
    model, _ = MLModelVersion.objects.update_or_create(
        name=name,
        version=version,
        defaults={
            "kind": kind,
            "label_source": label_source or ("danbooru" if kind == MLModelVersion.Kind.WD14 else name),
            "model_file": str(target / MODEL_FILE),
            "labels_file": str(target / labels_path.name),
            "sha256": sha256,
            "input_size": size,
            "fixed_batch": fixed_batch,
            "label_count": len(labels.names),
            "thresholds": thresholds,
            "use_mcut": use_mcut,
            "active": activate,
            "source": origin or str(source_dir),
        },
    )
    return model


def checked_thresholds(thresholds) -> dict[str, float]:
    """The model field's own check, before any file is copied: a bad value would break every later run."""
    thresholds = {} if thresholds is None else thresholds
    try:
        validate_category_thresholds(thresholds)
    except ValidationError as exc:
        raise ModelInstallError(" ".join(exc.messages)) from exc
    return thresholds


def read_graph_shape(path: Path) -> tuple[int, int | None, int | None]:
    """(input size, fixed batch or None, number of outputs or None) from the ONNX graph."""
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # noqa: BLE001 - protobuf raises several kinds on a bad file
        raise ModelInstallError(f"{path} is not a readable ONNX model: {exc}") from exc
    initializers = {init.name for init in graph.initializer}
    inputs = [item for item in graph.input if item.name not in initializers]
    dims = lambda value: [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]  # noqa: E731
    try:
        size, fixed_batch = read_input_shape(dims(inputs[0]))
    except (IndexError, ValueError) as exc:
        raise ModelInstallError(f"{path} is not in the WD14 contract: {exc}") from exc
    output_dims = dims(graph.output[0])
    return size, fixed_batch, output_dims[-1] if output_dims else None


@dataclass(frozen=True)
class Labels:
    names: list[str]
    categories: np.ndarray


CATEGORY_NAMES = {label: value for value, label in Tag.DanbooruCategory.choices}


def read_labels(path: str) -> Labels:
    """Row i is output i: `selected_tags.csv` (tag_id,name,category,count) or any CSV with a `name` column."""
    stat = os.stat(path)
    return _read_labels(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=32)
def _read_labels(path: str, mtime_ns: int, size: int) -> Labels:
    """Cached per file version: a label file rewritten in place (a reinstall) is read again."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "name" not in rows[0]:
        raise ModelInstallError(f"{path} has no `name` column")
    return Labels([row["name"] for row in rows], np.array([label_category(path, row.get("category")) for row in rows]))


def label_category(path: str, raw: str | None) -> int:
    """Danbooru's number (as in selected_tags.csv) or its name, which a custom label file may use; none: general."""
    raw = (raw or "0").strip().lower()
    category = int(raw) if raw.isdigit() else CATEGORY_NAMES.get(raw)
    if category is None:
        raise ModelInstallError(f"{path}: unknown category {raw!r} (a number or one of {', '.join(CATEGORY_NAMES)})")
    return category
