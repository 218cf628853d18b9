"""Roles -> endpoints -> clients: the database registry, environment overrides and the preflight check.

Environment variables win over the database so that one worker (or a test, or a benchmark) can
point a role elsewhere without editing shared rows: `TAGSITE_LLM_<ROLE>_URL`, `_MODEL`, `_KIND`,
`_API_KEY_ENV`, `_MAX_PARALLEL`, `_TIMEOUT`.
"""

import os
from dataclasses import dataclass, replace
from functools import partial

from tagsite.ai.base import EndpointConfig, LLMError
from tagsite.ai.gemini import GOOGLE_API, GeminiClient
from tagsite.ai.openai_compat import OpenAICompatClient
from tagsite.ai.slots import endpoint_slot
from tagsite.models import LLMEndpoint, LLMRole

ROLES = list(LLMRole.Name.values)
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
    if role not in ROLES:
        raise LLMError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    prefix = env_prefix(role)
    row = LLMRole.objects.select_related("endpoint").filter(role=role).first()
    if row is not None:
        config = endpoint_config(row.endpoint, row.model)
    elif os.environ.get(prefix + "URL") or os.environ.get(prefix + "KIND"):
        config = EndpointConfig(name=f"env-{role}")
    else:
        raise LLMError(f"no endpoint for role {role!r}: add an LLM role in admin or set {prefix}URL")
    changes = {field: os.environ[prefix + key] for key, field in OVERRIDES.items() if os.environ.get(prefix + key)}
    for field, kind in (("max_parallel", int), ("timeout", float)):
        if field in changes:
            changes[field] = kind(changes[field])
    if key_env := os.environ.get(prefix + "API_KEY_ENV"):
        changes["api_key"] = os.environ.get(key_env, "")
    return replace(config, **changes)


def client_for(config: EndpointConfig, **options) -> OpenAICompatClient | GeminiClient:
    """A client for the endpoint; every request holds one of the server's slots."""
    if config.kind == LLMEndpoint.Kind.GEMINI:
        slot = partial(endpoint_slot, config.base_url or GOOGLE_API, config.max_parallel)
        return GeminiClient(config, slot=slot, **options)
    return OpenAICompatClient(config, slot=partial(endpoint_slot, config.base_url, config.max_parallel), **options)


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
    try:
        client = client_for(config, attempts=1)
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
            if role == LLMRole.Name.EMBED:
                vector = client.embed(["a test sentence"])[0]
                checks.append(Check("embedding", True, f"{len(vector)} dimensions"))
            else:
                answer = client.chat_json(
                    "Answer in JSON.", "Is the sky blue on a clear day? Answer yes or no.", CHECK_SCHEMA, name="check"
                )
                checks.append(Check("structured output", True, f"json_schema round trip answered {answer['answer']!r}"))
        except LLMError as exc:
            step = "embedding" if role == LLMRole.Name.EMBED else "structured output"
            checks.append(Check(step, False, f"{exc}. Use a model/server that supports response_format json_schema."))
        return checks
    finally:
        client.close()
