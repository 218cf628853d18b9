"""Real WD14-contract ONNX models, built with the `onnx` package, whose outputs are functions of the pixels.

Input `[batch, H, W, 3]` float32, output `[batch, n_labels]` probabilities. The nine `FEATURE_TAGS`
score, in order: the mean of input channels 0, 1, 2 over the whole image, over the top eighth of the
rows and over the bottom eighth, each divided by 255. Channel 0 is blue in WD14's BGR order, so a
red image scores 1.0 on the third tag only if the pixels went in as BGR in 0..255; the top and
bottom bands are white only if the image was padded with white and centred.
"""

import csv
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DANBOORU_TAGS = Path(__file__).resolve().parents[1] / "data" / "danbooru_tags_sample.csv"
RATINGS = ["general", "sensitive", "questionable", "explicit"]


def danbooru_names(category: int, count: int, skip: int = 0) -> list[str]:
    """The most used tag names of a Danbooru category, from the real tag list."""
    names = []
    with DANBOORU_TAGS.open(newline="") as handle:
        for row in csv.reader(handle):
            if int(row[1]) == category:
                names.append(row[0])
                if len(names) == skip + count:
                    return names[skip:]
    return names[skip:]


FEATURE_TAGS = danbooru_names(0, 9)  # 1girl, solo, long_hair, ... : the pixel-driven scores
CONSTANT_TAGS = {name: score for name, score in zip(danbooru_names(0, 2, skip=9), [0.6, 0.2], strict=True)}
CHARACTER_TAGS = {name: score for name, score in zip(danbooru_names(4, 2), [0.9, 0.5], strict=True)}


def labels() -> list[tuple[str, int]]:
    """(name, category) in output order: ratings, general, characters, as in WD14's selected_tags.csv."""
    return (
        [(name, 9) for name in RATINGS]
        + [(name, 0) for name in [*FEATURE_TAGS, *CONSTANT_TAGS]]
        + [(name, 4) for name in CHARACTER_TAGS]
    )


def build_model(folder: Path, size: int = 448, batch: int | str = "batch", label_file: str = "selected_tags.csv"):
    """Write `model.onnx` and its label CSV into `folder`; return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    names = labels()
    n = len(names)
    weights = np.zeros((9, n), dtype=np.float32)
    bias = np.zeros(n, dtype=np.float32)
    bias[:4] = [0.5, 0.0, 0.05, 0.05]
    weights[0, 1] = 1.0  # "sensitive" follows the blue mean: a blue image is rated sensitive
    for feature in range(9):
        weights[feature, 4 + feature] = 1.0
    for offset, score in enumerate([*CONSTANT_TAGS.values(), *CHARACTER_TAGS.values()]):
        bias[13 + offset] = score
    band = size // 8
    ints = lambda name, values: numpy_helper.from_array(np.array(values, dtype=np.int64), name)  # noqa: E731
    nodes = [
        helper.make_node("ReduceMean", ["pixels"], ["mean_all"], axes=[1, 2], keepdims=0),
        helper.make_node("Slice", ["pixels", "zero", "band", "rows"], ["top"]),
        helper.make_node("Slice", ["pixels", "bottom_start", "size", "rows"], ["bottom"]),
        helper.make_node("ReduceMean", ["top"], ["mean_top"], axes=[1, 2], keepdims=0),
        helper.make_node("ReduceMean", ["bottom"], ["mean_bottom"], axes=[1, 2], keepdims=0),
        helper.make_node("Concat", ["mean_all", "mean_top", "mean_bottom"], ["features"], axis=1),
        helper.make_node("Mul", ["features", "inv255"], ["scaled"]),
        helper.make_node("MatMul", ["scaled", "weights"], ["linear"]),
        helper.make_node("Add", ["linear", "bias"], ["logits"]),
        helper.make_node("Clip", ["logits", "lo", "hi"], ["predictions_sigmoid"]),
    ]
    initializers = [
        ints("zero", [0]), ints("band", [band]), ints("bottom_start", [size - band]), ints("size", [size]),
        ints("rows", [1]), numpy_helper.from_array(np.array(1 / 255, dtype=np.float32), "inv255"),
        numpy_helper.from_array(weights, "weights"), numpy_helper.from_array(bias, "bias"),
        numpy_helper.from_array(np.array(0, dtype=np.float32), "lo"),
        numpy_helper.from_array(np.array(1, dtype=np.float32), "hi"),
    ]  # fmt: skip
    save_model(folder / "model.onnx", nodes, initializers, size, batch, n)
    with (folder / label_file).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["tag_id", "name", "category", "count"])
        for index, (name, category) in enumerate(names):
            writer.writerow([index, name, category, 1000 - index])
    return folder


def save_model(path: Path, nodes: list, initializers: list, size: int, batch: int | str, n: int) -> None:
    """A checked ONNX file from `pixels [batch, size, size, 3]` to `predictions_sigmoid [batch, n]`."""
    graph = helper.make_graph(
        nodes,
        "tagger_test",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [batch, size, size, 3])],
        [helper.make_tensor_value_info("predictions_sigmoid", TensorProto.FLOAT, [batch, n])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, path)


THEME_LABELS = {  # a custom theme model's own labels: the mean of a BGR channel / 255, or a constant
    "Warm Light": (2, 0.0),
    "Lush Greenery": (1, 0.0),
    "Deep Sea": (0, 0.0),
    "Film Grain": (None, 0.7),
    "Night Sky": (None, 0.1),
}


def build_theme_model(folder: Path, size: int = 224) -> Path:
    """A custom theme model: `model.onnx` and `labels.csv` with only a `name` column (no categories)."""
    folder.mkdir(parents=True, exist_ok=True)
    weights = np.zeros((3, len(THEME_LABELS)), dtype=np.float32)
    bias = np.zeros(len(THEME_LABELS), dtype=np.float32)
    for index, (channel, constant) in enumerate(THEME_LABELS.values()):
        if channel is not None:
            weights[channel, index] = 1 / 255
        bias[index] = constant
    nodes = [
        helper.make_node("ReduceMean", ["pixels"], ["means"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["means", "weights"], ["linear"]),
        helper.make_node("Add", ["linear", "bias"], ["logits"]),
        helper.make_node("Clip", ["logits", "lo", "hi"], ["predictions_sigmoid"]),
    ]
    initializers = [
        numpy_helper.from_array(weights, "weights"), numpy_helper.from_array(bias, "bias"),
        numpy_helper.from_array(np.array(0, dtype=np.float32), "lo"),
        numpy_helper.from_array(np.array(1, dtype=np.float32), "hi"),
    ]  # fmt: skip
    save_model(folder / "model.onnx", nodes, initializers, size, "batch", len(THEME_LABELS))
    (folder / "labels.csv").write_text("name\n" + "".join(f"{name}\n" for name in THEME_LABELS))
    return folder
