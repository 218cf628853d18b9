"""The backend interfaces, one per capability, with what every backend shares: configuration, errors, validation.

A capability is an abstract class: `ChatBackend` (structured JSON answers, with images),
`EmbeddingBackend` (vectors for texts) and `ImageTagger` (label probabilities for a batch of images).
A backend subclasses the capabilities it offers and must implement all of their methods: a missing
one is a `TypeError` when its class is defined (at import), not when a stage first calls it. Callers
see one interface and one family of errors whatever the server, so a stage can switch from LM Studio
to Gemini by editing a registry row.
"""

import json
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import jsonschema
import numpy as np

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
    top_p: float | None = None  # None: the server's default

    def described(self) -> dict[str, str]:
        """What a job's parameters say about the endpoint it ran on (never the key)."""
        return {"endpoint": self.name, "kind": self.kind, "base_url": self.base_url, "model": self.model}


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


class Capability:
    """Base of the capability interfaces. `interface=True` marks an interface; every other subclass is a
    backend, checked when it is defined: it must implement every abstract method it inherits."""

    def __init_subclass__(cls, interface: bool = False, **kwargs):
        super().__init_subclass__(**kwargs)
        if interface:
            return
        missing = [
            f"{next(base for base in cls.__mro__ if name in vars(base)).__name__}.{name}"
            for name in sorted(dir(cls))
            if getattr(getattr(cls, name, None), "__isabstractmethod__", False)
        ]
        if missing:
            raise TypeError(f"{cls.__qualname__} does not implement {', '.join(missing)}")


class EndpointBackend(Capability, ABC, interface=True):
    """A server behind a registry endpoint: a pooled connection to close, models to list; usable in `with`."""

    default_base_url: ClassVar[str] = DEFAULT_BASE_URL  # the server when the endpoint leaves its URL empty
    config: EndpointConfig

    @abstractmethod
    def list_models(self) -> list[str]:
        """The model ids the server offers (what the preflight compares the endpoint's model with)."""

    @abstractmethod
    def close(self) -> None:
        """Release the connections."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


# How a server is told the answer's JSON schema, strictest first: the server constrains the answer to it, the
# server is told it with a looser JSON mode, or only the prompt says it (the answer is validated in every case).
STRUCTURED_OUTPUTS = ("json_schema", "json_object", "schema_in_prompt")


class ChatBackend(EndpointBackend, interface=True):
    @abstractmethod
    def chat_json(self, system: str, user: str, schema: dict, *, name: str = "answer", images: Iterable = ()) -> Any:
        """Ask for a JSON answer constrained by `schema` (images: paths, PIL images or prepared JPEG bytes); return
        it validated."""

    def structured_output(self) -> str:
        """Which of STRUCTURED_OUTPUTS the endpoint takes; backends whose API has one schema mode say `json_schema`."""
        return STRUCTURED_OUTPUTS[0]


class EmbeddingBackend(EndpointBackend, interface=True):
    @abstractmethod
    def embed(self, texts: list[str]) -> list[list[float]]:
        """One vector per text, in input order."""


class ImageTagger(Capability, ABC, interface=True):
    """A local image classifier (the WD14 contract): `[n, size, size, 3]` pixels in, `[n, labels]` probabilities out."""

    input_size: int

    @abstractmethod
    def batch_limit(self, wanted: int) -> int:
        """The batch size it runs when `wanted` is asked for."""

    @abstractmethod
    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for a batch of preprocessed images."""


@dataclass(frozen=True)
class DetectedFace:
    """A face in an image: its box `(x, y, width, height)` in the image's pixels, the detector's confidence
    (0-1) and its five landmarks `(x, y)` (eyes, nose, mouth corners) when the detector gives them."""

    box: tuple[int, int, int, int]
    confidence: float
    landmarks: tuple[tuple[int, int], ...] = ()

    @property
    def area(self) -> int:
        return self.box[2] * self.box[3]


class FaceDetector(Capability, ABC, interface=True):
    """A local face detector."""

    name: str
    version: str

    @abstractmethod
    def detect(self, rgb: np.ndarray) -> list[DetectedFace]:
        """The faces in an `[H, W, 3]` uint8 RGB image, largest first."""


class ImageClassifier(Capability, ABC, interface=True):
    """A local classifier of image crops into fixed labels: crops in, `[n, labels]` probabilities out."""

    name: str
    version: str
    labels: tuple[str, ...]

    @abstractmethod
    def classify(self, crops: list) -> np.ndarray:
        """Probabilities (rows sum to 1, columns in `labels` order) for a list of PIL image crops."""


# The two capabilities a registry role can need, by the name apps declare them with (see tagsite.features).
CAPABILITIES: dict[str, type[EndpointBackend]] = {"chat": ChatBackend, "embed": EmbeddingBackend}


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
