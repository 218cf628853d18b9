"""Print the LLM endpoints and roles as they resolve now (database plus environment overrides)."""

import os

from tagsite.ai.base import LLMError
from tagsite.ai.registry import resolve_role
from tagsite.features import llm_roles
from tagsite.management.schema import SchemaCommand
from tagsite.models import LLMEndpoint


class Command(SchemaCommand):
    help = "List LLM endpoints and the endpoint, model and overrides each role resolves to."

    def handle(self, *args, **options):
        self.stdout.write("Endpoints:")
        for endpoint in LLMEndpoint.objects.all():
            key = "-"
            if endpoint.api_key_env:
                key = f"${endpoint.api_key_env} ({'set' if os.environ.get(endpoint.api_key_env) else 'NOT SET'})"
            self.stdout.write(
                f"  {endpoint.name:<16} {endpoint.kind:<7} {endpoint.base_url or 'Gemini API':<32} "
                f"{endpoint.model:<28} parallel={endpoint.max_parallel} timeout={endpoint.timeout:g}s key={key}"
            )
        self.stdout.write("Roles:")
        for role in sorted(llm_roles()):
            try:
                config = resolve_role(role)
            except LLMError as exc:
                self.stdout.write(f"  {role:<12} unresolved: {exc}")
                continue
            overridden = sorted(k for k in os.environ if k.startswith(f"TAGSITE_LLM_{role.upper()}_"))
            note = f"  (env: {', '.join(overridden)})" if overridden else ""
            self.stdout.write(
                f"  {role:<12} -> {config.name:<16} {config.base_url or 'Gemini API':<32} {config.model}{note}"
            )
