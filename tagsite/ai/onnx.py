"""ONNX Runtime sessions for WD14-format image taggers, with the reference preprocessing.

A WD14 model takes `[batch, H, W, 3]` float32 pixels in 0..255, BGR, of the image composited on
white and padded to a white square (centred), resized with bicubic to H=W; it outputs
probabilities `[batch, n_labels]` (no sigmoid needed). Sessions are cached per process, so a
Celery worker child loads each model once. Decoding runs in threads ahead of inference so the
CPU decodes the next batch while ONNX Runtime computes the current one.
"""

import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from threading import Lock

import numpy as np
import onnxruntime as ort
from PIL import Image

from tagsite import imaging

logger = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


@dataclass
class OnnxTagger:
    """A loaded WD14-contract model: its session and the input shape read from the graph."""

    path: str
    session: ort.InferenceSession
    input_name: str
    input_size: int
    fixed_batch: int | None  # None when the batch axis is dynamic
    providers: list[str]

    @property
    def on_gpu(self) -> bool:
        return CUDA in self.providers

    def batch_limit(self, wanted: int) -> int:
        """The batch size to run: what was asked for on a dynamic axis, the graph's own otherwise."""
        return self.fixed_batch or max(1, wanted)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for a `[n, H, W, 3]` batch, run in chunks the graph accepts."""
        step = self.fixed_batch or len(batch)
        outputs = [
            self.session.run(None, {self.input_name: batch[i : i + step]})[0] for i in range(0, len(batch), step)
        ]
        return np.concatenate(outputs).astype(np.float32, copy=False)


def read_input_shape(input_shape: list) -> tuple[int, int | None]:
    """(size, fixed batch or None) from an NHWC input shape; rejects what is not the WD14 contract."""
    if len(input_shape) != 4 or input_shape[3] != 3:
        raise ValueError(f"expected an NHWC input [batch, H, W, 3], got {input_shape}")
    batch, height, width = input_shape[:3]
    if not isinstance(height, int) or height != width:
        raise ValueError(f"expected a fixed square input size, got {height}x{width}")
    return height, batch if isinstance(batch, int) and batch > 0 else None


_sessions: dict[str, OnnxTagger] = {}
_sessions_lock = Lock()


def load_tagger(path: str, *, use_gpu: bool = True) -> OnnxTagger:
    """The session for a model file, created once per process (CUDA when this process has it)."""
    key = f"{os.path.abspath(path)}:{use_gpu}"
    with _sessions_lock:
        if key not in _sessions:
            _sessions[key] = _create(path, use_gpu)
        return _sessions[key]


def _create(path: str, use_gpu: bool) -> OnnxTagger:
    wanted = [CUDA, CPU] if use_gpu and CUDA in ort.get_available_providers() else [CPU]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(path, sess_options=options, providers=wanted)
    providers = session.get_providers()  # what it really runs on: CUDA can fail to load silently
    if CUDA in wanted and CUDA not in providers:
        logger.warning("ONNX model %s: CUDA was requested but the session fell back to CPU (%s)", path, providers)
    else:
        logger.info("ONNX model %s runs on %s", path, providers[0])
    model_input = session.get_inputs()[0]
    size, fixed_batch = read_input_shape(list(model_input.shape))
    return OnnxTagger(path, session, model_input.name, size, fixed_batch, providers)


def preprocess(image: Image.Image, size: int) -> np.ndarray:
    """The WD14 reference: on white, white square padding centred, bicubic to `size`, float32 BGR 0..255."""
    rgb = imaging.to_rgb(image)  # RGBA and friends are composited on white here
    side = max(rgb.size)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(rgb, ((side - rgb.width) // 2, (side - rgb.height) // 2))
    if side != size:
        square = square.resize((size, size), Image.Resampling.BICUBIC)
    red, green, blue = square.split()
    return np.asarray(Image.merge("RGB", (blue, green, red)), dtype=np.float32)  # contiguous, so batching is a copy


def load_pixels(path: str, size: int, max_pixels: int) -> np.ndarray:
    """Decode a file (JPEG at the smallest DCT scale still >= size) and preprocess it."""
    decoded = imaging.open_image(path, max_pixels=max_pixels, draft_size=size)
    return preprocess(decoded.image, size)


@dataclass
class Prediction:
    item: object
    probabilities: np.ndarray | None  # the pixels until inferred; None when the file could not be decoded
    error: str = ""


def predict_files(
    tagger: OnnxTagger,
    items: Iterable,
    load: Callable[[object], np.ndarray],
    *,
    batch_size: int = 32,
    threads: int | None = None,
) -> Iterator[Prediction]:
    """Predictions for `items` in order, decoding in threads ahead of inference on the batch axis.

    `load(item)` returns the preprocessed pixels or raises `imaging.ImageDecodeError`/`OSError`,
    which becomes a Prediction with an error instead of ending the batch.
    """
    batch_limit = tagger.batch_limit(batch_size)
    threads = threads or os.cpu_count() or 2
    ahead = max(2 * batch_limit, 2 * threads)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="decode") as pool:
        pending: deque[tuple[object, Future]] = deque()
        source = iter(items)

        def fill() -> None:
            while len(pending) < ahead:
                try:
                    item = next(source)
                except StopIteration:
                    return
                pending.append((item, pool.submit(load, item)))

        fill()
        while pending:
            batch: list[Prediction] = []
            while pending and sum(p.error == "" for p in batch) < batch_limit:
                item, future = pending.popleft()
                try:
                    batch.append(Prediction(item, future.result()))
                except (imaging.ImageDecodeError, OSError) as exc:
                    batch.append(Prediction(item, None, str(exc)))
            fill()  # the pool decodes the next batch while this one is inferred
            decoded = [p for p in batch if not p.error]
            if decoded:
                probabilities = tagger.predict(np.stack([p.probabilities for p in decoded]))
                for prediction, row in zip(decoded, probabilities, strict=True):
                    prediction.probabilities = row
            yield from batch
