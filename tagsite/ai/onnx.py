"""ONNX Runtime sessions for WD14-format image taggers, with the reference preprocessing.

A WD14 model takes `[batch, H, W, 3]` float32 pixels in 0..255, BGR, of the image composited on
white and padded to a white square (centred), resized with bicubic to H=W; it outputs
probabilities `[batch, n_labels]` (no sigmoid needed). Sessions are cached per process, so a
Celery worker child loads each model once. Decoding runs in threads ahead of inference so the
CPU decodes the next batch while ONNX Runtime computes the current one.
"""

import logging
import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from threading import Lock

import numpy as np
import onnxruntime as ort
from PIL import Image

from tagsite import imaging
from tagsite.ai.base import ImageTagger
from tagsite.services.jobs import describe_error

logger = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


@dataclass
class OnnxTagger(ImageTagger):
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
        """Probabilities for a `[n, H, W, 3]` batch, run in chunks the graph accepts.

        A fixed-batch graph refuses a shorter chunk (the last one, or one a failed decode shrank), so
        such a chunk is padded with blank rows up to the fixed batch and the padding's outputs dropped.
        """
        step = self.fixed_batch or len(batch)
        outputs = []
        for start in range(0, len(batch), step):
            chunk = batch[start : start + step]
            if len(chunk) < step:
                padding = np.zeros((step - len(chunk), *chunk.shape[1:]), dtype=chunk.dtype)
                chunk = np.concatenate([chunk, padding])
            outputs.append(self.session.run(None, {self.input_name: chunk})[0][: len(batch) - start])
        return np.concatenate(outputs).astype(np.float32, copy=False)


def read_input_shape(input_shape: list) -> tuple[int, int | None]:
    """(size, fixed batch or None) from an NHWC input shape; rejects what is not the WD14 contract."""
    if len(input_shape) != 4 or input_shape[3] != 3:
        raise ValueError(f"expected an NHWC input [batch, H, W, 3], got {input_shape}")
    batch, height, width = input_shape[:3]
    if not isinstance(height, int) or height != width:
        raise ValueError(f"expected a fixed square input size, got {height}x{width}")
    return height, batch if isinstance(batch, int) and batch > 0 else None


_sessions: dict[tuple[str, bool], tuple[tuple[int, int], OnnxTagger]] = {}
_sessions_lock = Lock()


def load_tagger(path: str, *, use_gpu: bool = True) -> OnnxTagger:
    """The session for a model file, created once per process (CUDA when this process has it).

    Kept with the file's mtime and size: a model reinstalled over the same path gets a new session
    in a running worker instead of the old weights.
    """
    stat = os.stat(path)
    key, identity = (os.path.abspath(path), use_gpu), (stat.st_mtime_ns, stat.st_size)
    with _sessions_lock:
        cached = _sessions.get(key)
        if cached is None or cached[0] != identity:
            _sessions[key] = cached = (identity, _create(path, use_gpu))
        return cached[1]


def _create(path: str, use_gpu: bool) -> OnnxTagger:
    wanted = [CUDA, CPU] if use_gpu and CUDA in ort.get_available_providers() else [CPU]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle ORT threads yield to decoding
    session = ort.InferenceSession(path, sess_options=options, providers=wanted)
    providers = session.get_providers()  # what it really runs on: CUDA can fail to load silently
    if CUDA in wanted and CUDA not in providers:
        logger.warning("ONNX model %s: CUDA was requested but the session fell back to CPU (%s)", path, providers)
    else:
        logger.info("ONNX model %s runs on %s", path, providers[0])
    model_input = session.get_inputs()[0]
    size, fixed_batch = read_input_shape(list(model_input.shape))
    return OnnxTagger(path, session, model_input.name, size, fixed_batch, providers)


WHITE = (255, 255, 255)


def preprocess(image: Image.Image, size: int, out: np.ndarray | None = None) -> np.ndarray:
    """The WD14 reference: on white, white square padding centred, bicubic to `size`, float32 BGR 0..255.

    Written into `out` (a `[size, size, 3]` float32 slot of a batch) when given, so batching copies nothing.
    """
    pixels = np.asarray(pad_and_resize(imaging.to_rgb(image), size))  # RGBA and friends go on white in to_rgb
    out = np.empty((size, size, 3), np.float32) if out is None else out
    for channel in range(3):  # RGB to BGR while converting to float32: one plane at a time is the fastest
        out[:, :, channel] = pixels[:, :, 2 - channel]
    return out


def pad_and_resize(rgb: Image.Image, size: int) -> Image.Image:
    """Pad to a white centred square, then bicubic to `size`, as Pillow would, without resizing the padding.

    Pillow resizes rows first, then columns, rounding to 8 bits in between. Padding rows above and
    below a wide image stay pure white through the row pass, and so do output rows whose bicubic
    window lies wholly in them: only the image's own rows are resized across, and only the output
    rows that reach the image are resized down. A tall image needs its padding inside every row,
    so it is padded first, as the reference does.
    """
    width, height = rgb.size
    side = max(width, height)
    square = Image.new("RGB", (side, side) if width < side or side == size else (size, side), WHITE)
    if side == size:
        square.paste(rgb, ((side - width) // 2, (side - height) // 2))
        return square
    bicubic = Image.Resampling.BICUBIC
    if width < side:
        square.paste(rgb, ((side - width) // 2, 0))
        return square.resize((size, size), bicubic)
    top = (side - height) // 2
    square.paste(rgb.resize((size, height), bicubic), (0, top))  # the row pass, on the image's rows only
    scale = side / size
    reach = 2 * max(scale, 1)  # how far a bicubic window reaches, in source rows
    first = max(0, math.floor((top - reach) / scale))
    last = min(size, math.ceil((top + height + reach) / scale))
    resized = Image.new("RGB", (size, size), WHITE)
    resized.paste(square.resize((size, last - first), bicubic, box=(0, first * scale, size, last * scale)), (0, first))
    return resized


def load_pixels(path: str, size: int, max_pixels: int, out: np.ndarray | None = None) -> np.ndarray:
    """Decode a file (JPEG at the smallest DCT scale still >= size) and preprocess it (into `out`)."""
    decoded = imaging.open_image(path, max_pixels=max_pixels, draft_size=size)
    return preprocess(decoded.image, size, out)


@dataclass
class Prediction:
    item: object
    probabilities: np.ndarray | None  # None when the file could not be decoded
    error: str = ""


def predict_files(
    tagger: OnnxTagger,
    items: Iterable,
    load: Callable[[object, np.ndarray], object],
    *,
    batch_size: int = 32,
    threads: int | None = None,
) -> Iterator[Prediction]:
    """Predictions for `items` in order, decoding in threads ahead of inference on the batch axis.

    `load(item, out)` writes the preprocessed pixels into `out`, a slot of a reused batch array
    (so no batch is stacked and no fresh memory is faulted in per batch), or raises
    `imaging.ImageDecodeError`/`OSError`, which becomes a Prediction with an error instead of
    ending the batch.
    """
    limit = tagger.batch_limit(batch_size)
    threads = threads or os.cpu_count() or 2
    depth = 1 + -(-2 * threads // limit)  # batches decoding ahead: enough to keep every thread busy meanwhile
    shape = (limit, tagger.input_size, tagger.input_size, 3)
    source = iter(items)
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="decode") as pool:
        ahead: deque[tuple[list, np.ndarray, list[Future]]] = deque()

        def submit(buffer: np.ndarray) -> None:
            chunk = list(islice(source, limit))
            if chunk:
                ahead.append((chunk, buffer, [pool.submit(load, item, buffer[i]) for i, item in enumerate(chunk)]))

        for _ in range(depth):
            submit(np.empty(shape, np.float32))
        spare = np.empty(shape, np.float32)
        while ahead:
            chunk, buffer, futures = ahead.popleft()
            batch = []
            for item, future in zip(chunk, futures, strict=True):
                try:
                    future.result()
                    batch.append(Prediction(item, None))
                except (imaging.ImageDecodeError, OSError) as exc:
                    batch.append(Prediction(item, None, describe_error(exc)))
            submit(spare)  # the threads decode further ahead while this batch is inferred and stored
            decoded = [index for index, prediction in enumerate(batch) if not prediction.error]
            if decoded:
                pixels = buffer[: len(batch)] if len(decoded) == len(batch) else buffer[decoded]
                for index, row in zip(decoded, tagger.predict(pixels), strict=True):
                    batch[index].probabilities = row
            spare = buffer
            yield from batch
