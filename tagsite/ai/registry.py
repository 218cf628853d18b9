"""Roles -> endpoints -> backends: the database registry, environment overrides and the preflight check.

The apps declare their roles and the capability each needs (`llm_roles`, tagsite/features.py); an
endpoint's kind names its backend class (`BACKENDS`, imported when first used). Environment variables
win over the database so that one worker (or a test, or a benchmark) can point a role elsewhere
without editing shared rows: `TAGSITE_LLM_<ROLE>_URL`, `_MODEL`, `_KIND`, `_API_KEY_ENV`,
`_MAX_PARALLEL`, `_TIMEOUT`.
"""

import os
from dataclasses import dataclass, replace
from functools import partial

from django.utils.module_loading import import_string

from tagsite.ai.base import CAPABILITIES, EndpointBackend, EndpointConfig, LLMError
from tagsite.ai.local_embeddings import CONFIG as LOCAL_EMBEDDINGS
from tagsite.ai.slots import endpoint_slot
from tagsite.features import llm_roles
from tagsite.models import LLMEndpoint, LLMRole

BACKENDS = {
    LLMEndpoint.Kind.OPENAI: "tagsite.ai.openai_compat.OpenAICompatClient",
    LLMEndpoint.Kind.GEMINI: "tagsite.ai.gemini.GeminiClient",
    "local": "tagsite.ai.local_embeddings.LocalMiniLM",  # no server: the offline default of `embed` roles
}
# What a role uses when neither a registry row nor the environment names an endpoint, by capability: embeddings
# work offline out of the box (chat has no local default: it needs a server).
OFFLINE_DEFAULTS = {"embed": LOCAL_EMBEDDINGS}
OVERRIDES = {"URL": "base_url", "MODEL": "model", "KIND": "kind", "MAX_PARALLEL": "max_parallel", "TIMEOUT": "timeout"}
CHECK_SCHEMA = {
    "type": "object",
    "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}},
    "required": ["answer"],
    "additionalProperties": False,
}


def env_prefix(role: str) -> str:
    return f"TAGSITE_LLM_{role.upper()}_"


def endpoint_config(endpoint: LLMEndpoint, model: str = "") -> EndpointConfig:
    return EndpointConfig(
        name=endpoint.name,
        kind=endpoint.kind,
        base_url=endpoint.base_url,
        model=model or endpoint.model,
        api_key=os.environ.get(endpoint.api_key_env, "") if endpoint.api_key_env else "",
        timeout=endpoint.timeout,
        max_parallel=endpoint.max_parallel,
        temperature=endpoint.temperature,
        max_tokens=endpoint.max_tokens,
    )


def resolve_role(role: str) -> EndpointConfig:
    """The endpoint a role uses: its registry row, then `TAGSITE_LLM_<ROLE>_*` overrides on top."""
    roles = llm_roles()
    if role not in roles:
        raise LLMError(f"unknown role {role!r}; roles are {', '.join(sorted(roles))}")
    prefix = env_prefix(role)
    row = LLMRole.objects.select_related("endpoint").filter(role=role).first()
    if row is not None:
        config = endpoint_config(row.endpoint, row.model)
    elif os.environ.get(prefix + "URL") or os.environ.get(prefix + "KIND"):
        config = EndpointConfig(name=f"env-{role}")
    elif roles[role] in OFFLINE_DEFAULTS:
        config = OFFLINE_DEFAULTS[roles[role]]
    else:
        raise LLMError(f"no endpoint for role {role!r}: add an LLM role in admin or set {prefix}URL")
    changes = {field: os.environ[prefix + key] for key, field in OVERRIDES.items() if os.environ.get(prefix + key)}
    for field, kind in (("max_parallel", int), ("timeout", float)):
        if field in changes:
            changes[field] = kind(changes[field])
    if key_env := os.environ.get(prefix + "API_KEY_ENV"):
        changes["api_key"] = os.environ.get(key_env, "")
    return replace(config, **changes)


def backend_class(kind: str) -> type[EndpointBackend]:
    if kind not in BACKENDS:
        raise LLMError(f"unknown endpoint kind {kind!r}; kinds are {', '.join(BACKENDS)}")
    return import_string(BACKENDS[kind])


def client_for(config: EndpointConfig, capability: str = "chat", **options) -> EndpointBackend:
    """A backend for the endpoint that offers `capability` (`chat` or `embed`); every request holds one of the
    server's slots."""
    backend = backend_class(config.kind)
    if not issubclass(backend, CAPABILITIES[capability]):
        raise LLMError(f"{config.name}: a {config.kind} endpoint offers no {capability}")
    slot = partial(endpoint_slot, config.base_url or backend.default_base_url, config.max_parallel)
    return backend(config, slot=slot, **options)


def client_for_role(role: str, **options) -> EndpointBackend:
    """The backend a role's stage talks to, with the capability the role's app declared for it."""
    return client_for(resolve_role(role), llm_roles()[role], **options)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def check_endpoint(config: EndpointConfig, role: str = "") -> list[Check]:
    """Preflight: reachable, model listed, and a structured round trip (an embedding for `embed`).

    Stops at the first failure, whose detail says what to fix.
    """
    checks: list[Check] = []
    where = f"edit the endpoint {config.name!r} in admin or set {env_prefix(role or 'ROLE')}URL"
    capability = llm_roles().get(role, "chat")
    try:
        client = client_for(config, capability, attempts=1)
    except LLMError as exc:
        return [Check("configured", False, str(exc))]
    try:
        try:
            models = client.list_models()
        except LLMError as exc:
            checks.append(Check("reachable", False, f"{exc}. Start the server (LM Studio, Ollama, vLLM) or {where}."))
            return checks
        checks.append(Check("reachable", True, f"{config.base_url or 'Gemini API'} answers, {len(models)} models"))
        if config.model not in models:
            listed = ", ".join(models[:10]) or "none"
            checks.append(
                Check("model listed", False, f"{config.model!r} is not served (listed: {listed}). Load it or {where}.")
            )
            return checks
        checks.append(Check("model listed", True, config.model))
        try:
            if capability == "embed":
                vector = client.embed(["a test sentence"])[0]
                checks.append(Check("embedding", True, f"{len(vector)} dimensions"))
            else:
                answer = client.chat_json(
                    "Answer in JSON.", "Is the sky blue on a clear day? Answer yes or no.", CHECK_SCHEMA, name="check"
                )
                form = client.structured_output()
                checks.append(Check("structured output", True, f"{form} round trip answered {answer['answer']!r}"))
        except LLMError as exc:
            step = "embedding" if capability == "embed" else "structured output"
            fix = "Use a model/server that answers JSON (json_schema or json_object)."
            checks.append(Check(step, False, f"{exc}. {fix}"))
        return checks
    finally:
        client.close()
