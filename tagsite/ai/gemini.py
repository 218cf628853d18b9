"""Gemini through google-genai (chat with structured output, and embeddings), behind the same interfaces as
the OpenAI-compatible client.

The SDK retries on its own; it is told explicitly what to retry (timeouts and 5xx) so that a 429
can be read first: an exhausted daily quota is reported as such instead of being retried for
hours, a per-minute limit waits the `RetryInfo` delay Google sends, and a 404 names the model.
"""

import logging
import re
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from itertools import count
from typing import Any

import httpx2
from google import genai
from google.genai import errors, types

from tagsite.ai.base import (
    ChatBackend,
    EmbeddingBackend,
    EndpointConfig,
    LLMError,
    LLMModelNotFound,
    LLMQuotaExhausted,
    LLMRateLimited,
    LLMTruncated,
    LLMUnavailable,
    parse_and_validate,
)
from tagsite.ai.openai_compat import jpeg_bytes

logger = logging.getLogger(__name__)

GOOGLE_API = "https://generativelanguage.googleapis.com"
EMBED_BATCH = 100  # texts per batchEmbedContents request, the API's limit


def quota_violations(error: errors.APIError) -> list[str]:
    """The quota ids of a RESOURCE_EXHAUSTED error (e.g. `GenerateRequestsPerDayPerProjectPerModel-FreeTier`)."""
    details = (error.details or {}).get("error", {}).get("details", []) if isinstance(error.details, dict) else []
    return [
        violation.get("quotaId", "")
        for detail in details
        if detail.get("@type", "").endswith("QuotaFailure")
        for violation in detail.get("violations", [])
    ]


def retry_delay(error: errors.APIError) -> float | None:
    """The `RetryInfo.retryDelay` of an error ("33s"), in seconds."""
    details = (error.details or {}).get("error", {}).get("details", []) if isinstance(error.details, dict) else []
    for detail in details:
        if detail.get("@type", "").endswith("RetryInfo"):
            match = re.fullmatch(r"([\d.]+)s", str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


class GeminiClient(ChatBackend, EmbeddingBackend):
    default_base_url = GOOGLE_API

    def __init__(
        self,
        config: EndpointConfig,
        *,
        attempts: int = 4,
        initial_delay: float = 1.0,
        max_delay: float = 30.0,
        max_retry_delay: float = 120.0,
        image_long_side: int = 1280,
        slot: Callable[[], AbstractContextManager] = nullcontext,
    ):
        """`slot` wraps every call (the SDK's own 5xx retries included) to cap requests in flight."""
        if not config.api_key:
            raise LLMError(f"{config.name}: Gemini needs an API key; set the endpoint's key environment variable")
        self.config = config
        self.attempts = attempts
        self.max_retry_delay = max_retry_delay
        self.image_long_side = image_long_side
        self.slot = slot
        self.client = genai.Client(
            api_key=config.api_key,
            http_options=types.HttpOptions(
                base_url=config.base_url or None,
                timeout=int(config.timeout * 1000),
                retry_options=types.HttpRetryOptions(
                    attempts=attempts,
                    initial_delay=initial_delay,
                    max_delay=max_delay,
                    http_status_codes=[408, 500, 502, 503, 504],
                ),
            ),
        )

    def close(self) -> None:
        self.client.close()

    def list_models(self) -> list[str]:
        return [model.name.removeprefix("models/") for model in self._call(self.client.models.list)]

    def chat_json(self, system: str, user: str, schema: dict, *, name: str = "answer", images: Iterable = ()) -> Any:
        parts: list = [types.Part.from_text(text=user)]
        parts += [
            types.Part.from_bytes(
                data=image if isinstance(image, bytes) else jpeg_bytes(image, self.image_long_side),
                mime_type="image/jpeg",
            )
            for image in images
        ]
        config = types.GenerateContentConfig(
            system_instruction=system,
            temperature=self.config.temperature,
            top_p=self.config.top_p,
            max_output_tokens=self.config.max_tokens,
            response_mime_type="application/json",
            response_json_schema=schema,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        )
        response = self._call(
            self.client.models.generate_content, model=self.config.model, contents=parts, config=config
        )
        candidate = (response.candidates or [None])[0]
        if candidate is not None and candidate.finish_reason == types.FinishReason.MAX_TOKENS:
            raise LLMTruncated(f"answer cut off at max_output_tokens={self.config.max_tokens}", raw=response.text or "")
        return parse_and_validate(response.text or "", schema)

    def embed(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), EMBED_BATCH):
            chunk = texts[start : start + EMBED_BATCH]
            # One Content per text: given bare strings, the SDK merges them into one for multimodal models.
            contents = [types.Content(parts=[types.Part.from_text(text=text)]) for text in chunk]
            response = self._call(self.client.models.embed_content, model=self.config.model, contents=contents)
            embeddings = response.embeddings or []
            if len(embeddings) != len(chunk):
                raise LLMUnavailable(f"{self.config.name}: {len(embeddings)} embeddings for {len(chunk)} texts")
            vectors += [list(embedding.values or []) for embedding in embeddings]
        return vectors

    def _call(self, function, **kwargs):
        for attempt in count(1):
            try:
                with self.slot():
                    return function(**kwargs)
            except errors.APIError as exc:
                if exc.code == 404:
                    raise LLMModelNotFound(
                        f"Gemini model {self.config.model!r} is not available (retired or misspelt): {exc.message}"
                    ) from exc
                if exc.code != 429:
                    if exc.code and exc.code >= 500:
                        raise LLMUnavailable(f"Gemini: {exc.code} {exc.status}: {exc.message}") from exc
                    raise LLMError(f"Gemini: {exc.code} {exc.status}: {exc.message}") from exc
                daily = [quota for quota in quota_violations(exc) if "PerDay" in quota]
                if daily:
                    raise LLMQuotaExhausted(
                        f"Gemini daily quota exhausted ({', '.join(daily)}); wait for the reset or raise the quota"
                    ) from exc
                delay = retry_delay(exc) or 2.0**attempt
                if attempt == self.attempts or delay > self.max_retry_delay:
                    raise LLMRateLimited(f"Gemini rate limited after {attempt} attempts: {exc.message}") from exc
                logger.info("Gemini 429; retry %d in %.1fs", attempt, delay)
                time.sleep(delay)
            except httpx2.HTTPError as exc:  # after the SDK's own retries
                raise LLMUnavailable(f"Gemini: cannot reach {self.config.base_url or 'the API'}: {exc}") from exc
