"""OpenAI-compatible chat and embeddings over httpx (LM Studio, Ollama, vLLM, LMDeploy, OpenAI).

Local servers differ in what they accept: LM Studio takes only `response_format={"type": "json_schema"}`,
llama.cpp's Python server rejects that (HTTP 500) and takes `{"type": "json_object", "schema": ...}`, some
take neither. The client probes each endpoint once (`structured_output`, cached per server and model for ten
minutes), uses the strictest form it takes, else puts the schema in the prompt; answers are validated here anyway
because small models still stray from the schema.
"""

import base64
import email.utils
import io
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageOps

from tagsite.ai.base import (
    STRUCTURED_OUTPUTS,
    ChatBackend,
    EmbeddingBackend,
    EndpointConfig,
    LLMError,
    LLMModelNotFound,
    LLMRateLimited,
    LLMTruncated,
    LLMUnavailable,
    parse_and_validate,
)

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
JSON_SCHEMA, JSON_OBJECT, SCHEMA_IN_PROMPT = STRUCTURED_OUTPUTS
NO_VISION = re.compile(r"image input is not supported|mmproj|does not support (images|vision)", re.IGNORECASE)
PROMPT_SCHEMA_LEAD = "Answer with one JSON value and nothing else. It must match this JSON schema:"
PROBE_MARK = "Structured-output probe"  # how a test server tells the probe from a stage's requests
PROBE_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
    "required": ["answer"],
    "additionalProperties": False,
}
_dialects: dict[tuple[str, str], tuple[str, float]] = {}  # (base URL, model) -> (what it takes, when probed)
PROBE_SECONDS = 600.0  # then probed again: a long-running worker sees a server swapped behind the same URL
_dialects_lock = threading.Lock()
_probe_lock = threading.Lock()


def forget_structured_outputs() -> None:
    """Probe every endpoint again (a server was swapped or reconfigured behind the same URL)."""
    with _dialects_lock:
        _dialects.clear()


def response_format(dialect: str, name: str, schema: dict) -> dict | None:
    if dialect == JSON_SCHEMA:
        return {"type": "json_schema", "json_schema": {"name": name, "strict": True, "schema": schema}}
    if dialect == JSON_OBJECT:
        return {"type": "json_object", "schema": schema}
    return None


def strip_fences(text: str) -> str:
    """A model told the schema in the prompt may wrap its JSON in a Markdown code fence."""
    match = re.fullmatch(r"\s*```(?:json)?\s*(.*?)\s*```\s*", text or "", flags=re.DOTALL)
    return match.group(1) if match else text


def jpeg_bytes(image: str | Path | Image.Image, long_side: int = 1280, quality: int = 90) -> bytes:
    """The image as JPEG, EXIF-rotated, flattened on white and downscaled to at most `long_side` pixels."""
    picture = image if isinstance(image, Image.Image) else Image.open(image)
    picture = ImageOps.exif_transpose(picture)
    if picture.mode != "RGB":
        background = Image.new("RGB", picture.size, "white")
        background.paste(picture.convert("RGBA"), mask=picture.convert("RGBA").getchannel("A"))
        picture = background
    picture.thumbnail((long_side, long_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def image_data_url(image: str | Path | Image.Image | bytes, long_side: int = 1280) -> str:
    """How OpenAI-compatible servers take an image: a base64 JPEG data URL (bytes: a JPEG already prepared, so
    the stages of one image encode it once)."""
    data = image if isinstance(image, bytes) else jpeg_bytes(image, long_side)
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` as seconds: either a number or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class OpenAICompatClient(ChatBackend, EmbeddingBackend):
    """Chat (structured JSON) and embeddings against one endpoint, with pooled connections and retries.

    Transport failures (connect errors, timeouts, 429, 5xx) are retried with exponential backoff and
    full jitter, honouring `Retry-After`; a wrong answer is not retried here, the caller decides.
    `slot` wraps every HTTP attempt (not the backoff sleeps) so a cross-process semaphore can cap
    the requests in flight at the server's parallel slots.
    """

    def __init__(
        self,
        config: EndpointConfig,
        *,
        attempts: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        max_retry_after: float = 120.0,
        image_long_side: int = 1280,
        slot: Callable[[], AbstractContextManager] = nullcontext,
    ):
        self.config = config
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.image_long_side = image_long_side
        self.slot = slot
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self.http = httpx.Client(
            base_url=config.base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(config.timeout, connect=min(10.0, config.timeout)),
            limits=httpx.Limits(max_connections=max(4, 2 * config.max_parallel), max_keepalive_connections=16),
        )

    def close(self) -> None:
        self.http.close()

    def list_models(self) -> list[str]:
        return [model["id"] for model in self._request("GET", "models").json().get("data", [])]

    def chat_json(self, system: str, user: str, schema: dict, *, name: str = "answer", images: Iterable = ()) -> Any:
        content: str | list = user
        if images:
            content = [{"type": "text", "text": user}] + [
                {"type": "image_url", "image_url": {"url": image_data_url(image, self.image_long_side)}}
                for image in images
            ]
        dialect = self.structured_output()
        if dialect == SCHEMA_IN_PROMPT:
            system = f"{system}\n\n{PROMPT_SCHEMA_LEAD}\n{json.dumps(schema)}"
        body = {
            "model": self.config.model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": content}],
            "temperature": self.config.temperature,
            "max_tokens": self.config.max_tokens,
        }
        if self.config.top_p is not None:
            body["top_p"] = self.config.top_p
        if (form := response_format(dialect, name, schema)) is not None:
            body["response_format"] = form
        payload = self._request("POST", "chat/completions", json=body).json()
        try:
            choice = payload["choices"][0]
            text = choice["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise LLMUnavailable(f"{self.config.name}: malformed chat response ({exc!r})") from exc
        if choice.get("finish_reason") == "length":
            raise LLMTruncated(
                f"answer cut off at max_tokens={self.config.max_tokens} (finish_reason=length)", raw=text or ""
            )
        return parse_and_validate(strip_fences(text) if dialect == SCHEMA_IN_PROMPT else text, schema)

    def structured_output(self) -> str:
        """The strictest structured output the endpoint takes, probed once per server and model: `json_schema`,
        else `json_object` with the schema, else the schema in the prompt (answers are validated either way)."""
        key = (self.config.base_url.rstrip("/"), self.config.model)
        if found := self._probed(key):
            return found
        with _probe_lock:  # threads starting together probe once
            if found := self._probed(key):
                return found
            found = SCHEMA_IN_PROMPT
            for dialect in (JSON_SCHEMA, JSON_OBJECT):
                refusal = self._refusal(dialect)
                if not refusal:
                    found = dialect
                    break
                logger.info(
                    "%s (%s) refuses response_format %s: %s", self.config.name, self.config.model, dialect, refusal
                )
            with _dialects_lock:
                _dialects[key] = (found, time.monotonic())
        return found

    @staticmethod
    def _probed(key: tuple[str, str]) -> str:
        """The dialect probed for this server and model in the last PROBE_SECONDS ("" when none)."""
        with _dialects_lock:
            found, when = _dialects.get(key, ("", 0.0))
        return found if found and time.monotonic() - when < PROBE_SECONDS else ""

    def _refusal(self, dialect: str) -> str:
        """Why the server refuses a tiny request in this dialect ("" when it answers). A 500 is asked twice (it is
        how llama-cpp-python refuses `json_schema`, and also what a passing fault looks like); a server that is
        down or keeps answering 429/503 raises, so nothing is cached from it."""
        body = {
            "model": self.config.model,
            "messages": [
                {"role": "system", "content": "Answer in JSON."},
                {"role": "user", "content": f"{PROBE_MARK}: is the sky blue on a clear day? Answer yes or no."},
            ],
            "max_tokens": 32,
            "temperature": 0,
            "response_format": response_format(dialect, "probe", PROBE_SCHEMA),
        }
        problem = ""
        attempts = max(self.attempts, 2)
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                time.sleep(random.uniform(0, min(self.max_backoff, self.backoff * 2 ** (attempt - 2))))
            try:
                with self.slot():
                    response = self.http.post("chat/completions", json=body)
            except httpx.TransportError as exc:
                problem = f"cannot connect to {self.config.base_url}: {exc}"
                continue
            if response.status_code < 400:
                return ""
            problem = f"HTTP {response.status_code}: {response.text[:200]}"
            if response.status_code == 404:
                raise LLMModelNotFound(f"{self.config.base_url} answered 404 for model {self.config.model!r}")
            if response.status_code not in RETRYABLE_STATUS or (response.status_code == 500 and attempt >= 2):
                return problem
        raise LLMUnavailable(
            f"{self.config.name}: {problem} while probing structured output (after {attempts} attempts)"
        )

    def embed(self, texts: list[str]) -> list[list[float]]:
        payload = self._request("POST", "embeddings", json={"model": self.config.model, "input": texts}).json()
        rows = sorted(payload["data"], key=lambda row: row["index"])
        if len(rows) != len(texts):
            raise LLMUnavailable(f"{self.config.name}: {len(rows)} embeddings for {len(texts)} texts")
        return [row["embedding"] for row in rows]

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response:
        last_problem = ""
        for attempt in range(1, self.attempts + 1):
            wait = None
            try:
                with self.slot():
                    response = self.http.request(method, path, **kwargs)
            except httpx.TimeoutException as exc:
                last_problem = f"timed out after {self.config.timeout:g}s ({type(exc).__name__})"
            except httpx.TransportError as exc:
                last_problem = f"cannot connect to {self.config.base_url}: {exc}"
            else:
                if response.status_code < 400:
                    return response
                detail = response.text[:300]
                if response.status_code == 404 and path != "models":
                    raise LLMModelNotFound(
                        f"{self.config.base_url}/{path} answered 404 for model {self.config.model!r}: {detail}"
                    )
                if NO_VISION.search(detail):  # llama.cpp answers 500 to images without a projector: not passing
                    raise LLMError(
                        f"{self.config.name}: model {self.config.model!r} does not take images ({detail}). "
                        "Serve a vision model (llama.cpp: with its --mmproj projector) for the VLM stages."
                    )
                if response.status_code not in RETRYABLE_STATUS:
                    raise LLMError(f"{self.config.base_url}/{path} answered HTTP {response.status_code}: {detail}")
                last_problem = f"HTTP {response.status_code}: {detail}"
                wait = retry_after_seconds(response.headers.get("retry-after"))
                if wait is not None and wait > self.max_retry_after:
                    raise LLMRateLimited(f"{self.config.name}: server asks to wait {wait:.0f}s ({detail})")
                if response.status_code == 429 and attempt == self.attempts:
                    raise LLMRateLimited(f"{self.config.name}: still rate limited after {attempt} attempts")
            if attempt < self.attempts:
                if wait is None:
                    wait = random.uniform(0, min(self.max_backoff, self.backoff * 2 ** (attempt - 1)))
                logger.info("%s %s: %s; retry %d in %.2fs", self.config.name, path, last_problem, attempt, wait)
                time.sleep(wait)
        raise LLMUnavailable(f"{self.config.name}: {last_problem} (after {self.attempts} attempts)")
