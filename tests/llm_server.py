"""Real HTTP servers on 127.0.0.1 that speak the OpenAI-compatible and Gemini wire formats.

Answers come from a rule the test sets (`server.chat_rule(body) -> JSON-able answer`); the server
can add latency, serve only `slots` requests at a time (the rest queue, as LM Studio's do), and
inject faults in order, one per request: `server.inject("429", "invalid_json")`.

Both serve embeddings too (`/v1/embeddings`; Gemini's `:embedContent` and `:batchEmbedContents`), with the
same latency, slots and faults, and a vector per text that depends only on the text (`server.embed_rule(text)`).

OpenAI-compatible faults: 429 (with Retry-After), 500, hang (past the client's timeout),
invalid_json, truncated (cut JSON, finish_reason length), off_enum (one value outside its enum),
missing_item (one batch item, a keyed answer's last key, or one embedding, dropped), fenced (the JSON in a
Markdown code fence). Images: each is recorded (`server.images`) and `colour_rule` answers from its mean colour;
`server.dialect` is the structured output it takes, `server.vision = False` refuses images. Gemini faults:
quota_daily, rate_minute, 500, missing_item. Gemini requests reach `chat_rule` in the OpenAI shape
(system and user messages, `response_format.json_schema.schema`), so one rule answers both servers.
"""

import base64
import hashlib
import io
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image as PILImage
from PIL import ImageStat

OFF_ENUM = "99_Not_A_Category"
PROBE_MARK = "Structured-output probe"  # tagsite.ai.openai_compat's


def first_enum(schema: dict) -> list[str]:
    """The first enum in a JSON schema (depth first): what a batch answer's category must be one of."""
    if "enum" in schema:
        return schema["enum"]
    for value in schema.get("properties", {}).values():
        if found := first_enum(value):
            return found
    return first_enum(schema["items"]) if isinstance(schema.get("items"), dict) else []


def stable_choice(text: str, options: list[str]) -> str:
    return options[int(hashlib.sha1(text.encode()).hexdigest(), 16) % len(options)]


def schema_answer(schema: dict) -> Any:
    """The simplest answer that satisfies a JSON schema: first enum values, required properties only."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {key: schema_answer(schema["properties"][key]) for key in schema.get("required", [])}
    return {"array": [], "string": "test", "number": 0.5, "integer": 0, "boolean": True}.get(kind)


def request_schema(body: dict) -> dict:
    """The schema a request asks for, in any of the three dialects: `json_schema`, `json_object` with a `schema`,
    or (neither) the system prompt's last line."""
    form = body.get("response_format") or {}
    if form.get("type") == "json_schema":
        return form["json_schema"]["schema"]
    if form.get("type") == "json_object" and "schema" in form:
        return form["schema"]
    return json.loads(body["messages"][0]["content"].rsplit("\n", 1)[-1])


def default_rule(body: dict) -> Any:
    return schema_answer(request_schema(body))


def categorize_rule(lookup: Callable[[str], str | None] = lambda name: None) -> Callable[[dict], Any]:
    """Answer a batch categorisation request: each tag gets `lookup(name)`, or a stable pick from the
    schema's enum when the lookup has no opinion. Tags are the schema's keys when each is an enum and
    a line of the prompt (the keyed shape), else the prompt's `N: name` lines (the indexed shape).
    Other requests get the schema's simplest answer (the preflight's round trip)."""

    def rule(body: dict) -> Any:
        schema = request_schema(body)
        codes = first_enum(schema)
        keys = schema.get("properties", {})
        prompt = user_text(body)
        asked = set(prompt.splitlines())
        if keys and all("enum" in value and name in asked for name, value in keys.items()):
            return {name: lookup(name) or stable_choice(name, codes) for name in keys}
        lines = re.findall(r"^(\d+): (\S+)", prompt, flags=re.MULTILINE)
        if not lines:
            return default_rule(body)
        return {
            "items": [
                {"index": int(index), "category": lookup(name) or stable_choice(name, codes), "confidence": 0.9}
                for index, name in lines
            ]
        }

    return rule


def request_images(body: dict) -> list:
    """The images of a chat request (data URLs in `image_url` parts), decoded."""
    content = body["messages"][-1]["content"] if body.get("messages") else ""
    parts = content if isinstance(content, list) else []
    urls = [part["image_url"]["url"] for part in parts if part.get("type") == "image_url"]
    return [PILImage.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))) for url in urls]


COLOURS = {"red": (220, 30, 30), "green": (30, 180, 30), "blue": (30, 30, 220), "yellow": (230, 220, 30),
           "white": (245, 245, 245), "black": (10, 10, 10), "grey": (128, 128, 128)}  # fmt: skip


def colour_name(image) -> str:
    """The named colour nearest the image's mean pixel (a JPEG decoded at 1/8 scale: the mean is the same, and the
    server's own CPU stays out of a benchmark's way)."""
    image.draft("RGB", (image.width // 8, image.height // 8))
    mean = ImageStat.Stat(image.convert("RGB")).mean
    return min(COLOURS, key=lambda name: sum((a - b) ** 2 for a, b in zip(COLOURS[name], mean, strict=True)))


def colour_rule(body: dict) -> Any:
    """Answer a VLM request from the image's mean colour: every string property says the colour (padded to its
    minLength, cut to its maxLength), every list holds it. So a test sees which image went to which request."""
    images = request_images(body)
    if not images:  # a preflight's round trip
        return default_rule(body)
    colour = colour_name(images[0])
    schema = request_schema(body)
    answer = {}
    for key, prop in schema.get("properties", {}).items():
        if "enum" in prop:
            answer[key] = prop["enum"][0]
        elif prop.get("type") == "array":
            answer[key] = [colour, f"{colour} picture"][: prop.get("maxItems", 2)]
        else:
            text = f"A {colour} picture" if key != "filename" else f"{colour} picture"
            text = text.ljust(prop.get("minLength", 0), ".")
            answer[key] = text[: prop.get("maxLength", len(text))]
    return answer


def user_text(body: dict) -> str:
    content = body["messages"][-1]["content"]
    return content if isinstance(content, str) else " ".join(p.get("text", "") for p in content if "text" in p)


def apply_fault(answer: Any, fault: str | None) -> Any:
    if fault == "off_enum":
        if isinstance(answer, dict) and answer.get("items"):
            answer["items"][0]["category"] = OFF_ENUM
        elif isinstance(answer, dict):
            key = next(k for k, v in answer.items() if isinstance(v, str))
            answer[key] = OFF_ENUM
    elif fault == "missing_item" and isinstance(answer, dict) and answer.get("items"):
        answer["items"].pop()
    elif fault == "missing_item" and isinstance(answer, dict) and answer:
        answer.pop(list(answer)[-1])  # a keyed answer: its last key
    return answer


class _Server:
    """The threads, the slots and the fault queue; subclasses speak a wire format."""

    def __init__(self, *, latency: float = 0.0, slots: int = 64, models=("test-model",), hang_seconds: float = 5.0):
        self.latency = latency
        self.slots = threading.Semaphore(slots)
        self.models = list(models)
        self.hang_seconds = hang_seconds
        self.retry_after = 1
        self.chat_rule: Callable[[dict], Any] = default_rule
        self.embed_rule: Callable[[str], list[float]] = embedding  # a test may give texts vectors that mean something
        self.faults: deque[str] = deque()
        self.requests: list[tuple[str, dict]] = []
        # Structured output it takes (OpenAI-compatible): "json_schema" (LM Studio), "json_object" (llama-cpp-python:
        # json_schema is an HTTP 500, json_object with a schema works) or "none" (any response_format is a 400).
        self.dialect = "json_schema"
        self.images: list = []  # per chat request that carried images: the first one, decoded
        self.probes: list[tuple[str, dict]] = []
        self.vision = True  # False: a text-only model (images are refused)
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False
        self.httpd.app = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def inject(self, *faults: str) -> None:
        self.faults.extend(faults)

    def chat_requests(self) -> list[dict]:
        return [body for path, body in self.requests if path.endswith(("chat/completions", ":generateContent"))]

    def embed_requests(self) -> list[dict]:
        return [body for path, body in self.requests if path.endswith(("/embeddings", "EmbedContents", "embedContent"))]

    def start(self):
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def serve(self, handler: "_Handler", path: str, body: dict) -> None:
        probe = PROBE_MARK in user_text(body) if body.get("messages") else False
        with self.lock:  # the client's structured-output probe is kept apart: it takes no fault, counts no request
            (self.probes if probe else self.requests).append((path, body))
            listing = path.split("?", 1)[0].endswith("/models")  # a model listing takes no fault either
            fault = self.faults.popleft() if self.faults and not listing and not probe else None
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            with self.slots:
                if self.latency:
                    time.sleep(self.latency)
                if fault == "hang":
                    time.sleep(self.hang_seconds)
                self.respond(handler, path, body, fault)
        finally:
            with self.lock:
                self.in_flight -= 1

    def respond(self, handler: "_Handler", path: str, body: dict, fault: str | None) -> None:
        raise NotImplementedError


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else keep-alive answers wait ~40 ms for a delayed ACK

    def log_message(self, format, *args):  # quiet
        pass

    def do_GET(self):
        self.server.app.serve(self, self.path, {})

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        self.server.app.serve(self, self.path, body)

    def send_json(self, status: int, payload: Any, headers: dict | None = None, raw: bytes | None = None) -> None:
        data = raw if raw is not None else json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a hang past its timeout)


class OpenAITestServer(_Server):
    """`/v1/models`, `/v1/chat/completions` (response_format json_schema) and `/v1/embeddings`."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def respond(self, handler, path, body, fault):
        if path == "/v1/models":
            models = [{"id": model, "object": "model"} for model in self.models]
            return handler.send_json(200, {"object": "list", "data": models})
        if fault == "429":
            return handler.send_json(
                429, {"error": {"message": "slow down"}}, headers={"Retry-After": str(self.retry_after)}
            )
        if fault == "500":
            return handler.send_json(500, {"error": {"message": "internal error"}})
        if path not in ("/v1/chat/completions", "/v1/embeddings"):
            return handler.send_json(404, {"error": {"message": f"no route {path}"}})
        if body.get("model") not in self.models:
            return handler.send_json(404, {"error": {"message": f"model {body.get('model')!r} not found"}})
        if path == "/v1/embeddings":
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            vectors = [self.embed_rule(text) for text in texts]
            data = [{"object": "embedding", "index": i, "embedding": vector} for i, vector in enumerate(vectors)]
            data.reverse()  # the index, not the order, says which text a vector belongs to
            if fault == "missing_item":
                data.pop()
            return handler.send_json(200, {"object": "list", "data": data, "model": body.get("model")})
        form = (body.get("response_format") or {}).get("type")
        if self.dialect == "json_object" and form == "json_schema":
            message = "1 validation error: response_format.type Input should be 'text' or 'json_object'"
            return handler.send_json(500, {"error": {"message": message}})
        if form not in (None, "text", {"json_schema": "json_schema", "json_object": "json_object"}.get(self.dialect)):
            return handler.send_json(400, {"error": {"message": f"'response_format.type' {form!r} is not supported"}})
        if images := request_images(body):
            if not self.vision:  # as llama.cpp's server answers a text model asked about an image
                message = "image input is not supported - hint: if this is unexpected, you may need to provide the "
                message += "mmproj"
                return handler.send_json(500, {"error": {"code": 500, "message": message, "type": "server_error"}})
            with self.lock:
                self.images.append(images[0])
        rule = default_rule if PROBE_MARK in user_text(body) else self.chat_rule  # a test's rule answers its requests
        text = json.dumps(apply_fault(rule(body), fault))
        finish = "stop"
        if fault == "invalid_json":
            text = "Sure! Here are the categories: {items: [oops"
        elif fault == "truncated":
            text, finish = text[: len(text) // 2], "length"
        elif fault == "fenced":  # how a model told the schema only in the prompt often answers
            text = f"```json\n{text}\n```"
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
        return handler.send_json(200, {"id": "chatcmpl-test", "object": "chat.completion", "choices": [choice]})


def embedding(text: str, dimensions: int = 8) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [byte / 255 for byte in digest[:dimensions]]


class GeminiTestServer(_Server):
    """Gemini's REST format: `GET /v1beta/models`, `POST /v1beta/models/{model}:generateContent`,
    `:embedContent` and `:batchEmbedContents` (or v1)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def respond(self, handler, path, body, fault):
        path = path.split("?", 1)[0]
        if re.fullmatch(r"/v1(beta)?/models", path):
            return handler.send_json(200, {"models": [{"name": f"models/{m}"} for m in self.models]})
        match = re.fullmatch(r"/v1(?:beta)?/models/([^:]+):(generateContent|embedContent|batchEmbedContents)", path)
        if not match:
            return handler.send_json(404, error(404, "NOT_FOUND", f"no route {path}"))
        if fault == "quota_daily":
            return handler.send_json(429, quota_error("GenerateRequestsPerDayPerProjectPerModel-FreeTier", "43200s"))
        if fault == "rate_minute":
            return handler.send_json(429, quota_error("GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "1s"))
        if fault == "500":
            return handler.send_json(500, error(500, "INTERNAL", "An internal error has occurred."))
        if match.group(1) not in self.models:
            message = f"models/{match.group(1)} is not found for API version v1beta, or is not supported."
            return handler.send_json(404, error(404, "NOT_FOUND", message))
        if match.group(2) == "embedContent":
            return handler.send_json(200, {"embedding": {"values": self.embed_rule(content_text(body["content"]))}})
        if match.group(2) == "batchEmbedContents":
            if any(request.get("model") != f"models/{match.group(1)}" for request in body["requests"]):
                return handler.send_json(400, error(400, "INVALID_ARGUMENT", "each request's model must be the URL's"))
            vectors = [{"values": self.embed_rule(content_text(request["content"]))} for request in body["requests"]]
            return handler.send_json(200, {"embeddings": vectors[:-1] if fault == "missing_item" else vectors})
        text = json.dumps(apply_fault(self.chat_rule(openai_shape(body)), fault))
        candidate = {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP", "index": 0}
        return handler.send_json(200, {"candidates": [candidate], "modelVersion": match.group(1)})


def content_text(content: dict) -> str:
    return " ".join(part.get("text", "") for part in content.get("parts", []))


def openai_shape(body: dict) -> dict:
    """A generateContent request as the OpenAI-compatible request a chat rule reads."""
    system = content_text(body.get("systemInstruction", {}))
    user = " ".join(content_text(content) for content in body.get("contents", []))
    schema = body.get("generationConfig", {}).get("responseJsonSchema", {})
    return {
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}},
    }


def error(code: int, status: str, message: str, details: list | None = None) -> dict:
    return {"error": {"code": code, "message": message, "status": status, "details": details or []}}


def quota_error(quota_id: str, delay: str) -> dict:
    details = [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{"quotaMetric": "generativelanguage.googleapis.com/requests", "quotaId": quota_id}],
        },
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
    ]
    return error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota.", details)
