"""What every chat backend shares: its configuration, its errors and answer validation.

Callers see one small interface (`chat_json`, `list_models`) and one family of errors, whatever
the server behind it, so a stage can switch from LM Studio to Gemini by editing a registry row.
"""

import json
from dataclasses import dataclass
from typing import Any, Protocol

import jsonschema

DEFAULT_BASE_URL = "http://127.0.0.1:1234/v1"


@dataclass(frozen=True)
class EndpointConfig:
    """One resolved endpoint (registry row plus environment overrides); the API key is the value itself."""

    name: str
    kind: str = "openai"
    base_url: str = DEFAULT_BASE_URL
    model: str = ""
    api_key: str = ""
    timeout: float = 120.0
    max_parallel: int = 4
    temperature: float = 0.1
    max_tokens: int = 4096


class LLMError(Exception):
    """An LLM call that did not produce a usable answer; the message says what to fix where possible."""


class LLMUnavailable(LLMError):
    """The server could not be reached or kept failing (connection errors, timeouts, 5xx) after retries."""


class LLMRateLimited(LLMError):
    """The server kept answering 429 after retries."""


class LLMQuotaExhausted(LLMRateLimited):
    """A daily (or other long-window) quota is used up: retrying today will not help."""


class LLMModelNotFound(LLMError):
    """The model is not served (not loaded, misspelt, or retired)."""


class LLMInvalidOutput(LLMError):
    """The answer is not JSON or does not match the schema. `data` holds the parsed answer, if any."""

    def __init__(self, message: str, data: Any = None, raw: str = ""):
        super().__init__(message)
        self.data = data
        self.raw = raw


class LLMTruncated(LLMInvalidOutput):
    """The answer hit the token limit (`finish_reason == "length"`): the JSON is cut off."""


class ChatClient(Protocol):
    config: EndpointConfig

    def chat_json(self, system: str, user: str, schema: dict, *, name: str = "answer", images=()) -> Any: ...

    def list_models(self) -> list[str]: ...

    def close(self) -> None: ...


def parse_and_validate(text: str, schema: dict) -> Any:
    """Parse a model's JSON answer and check it against the schema the request asked for."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise LLMInvalidOutput(f"answer is not valid JSON: {exc}", raw=text or "") from exc
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data), key=lambda error: error.path)
    if errors:
        where = "/".join(str(part) for part in errors[0].absolute_path) or "(root)"
        raise LLMInvalidOutput(f"answer does not match the schema at {where}: {errors[0].message}", data, text)
    return data
