"""Preflight of the LLM registry: is each role's endpoint reachable, serving the model, answering JSON?"""

from django.core.management.base import CommandError

from tagsite.ai.base import LLMError
from tagsite.ai.registry import check_endpoint, resolve_role
from tagsite.features import llm_roles
from tagsite.management.schema import SchemaCommand


class Command(SchemaCommand):
    help = "Check the endpoint of a role (default: every configured role): reachable, model listed, structured output."

    def add_arguments(self, parser):
        parser.add_argument(
            "roles", nargs="*", metavar="ROLE", help=f"One or more of {', '.join(sorted(llm_roles()))}."
        )

    def handle(self, *args, roles, **options):
        failed = []
        for role in roles or sorted(llm_roles()):
            try:
                config = resolve_role(role)
            except LLMError as exc:
                self.stdout.write(f"{role}: ✗ {exc}")
                failed.append(role)
                continue
            where = config.base_url or "Gemini API"
            self.stdout.write(f"{role}: {config.name} ({config.kind}) {where} model {config.model}")
            for check in check_endpoint(config, role):
                self.stdout.write(f"  {'✓' if check.ok else '✗'} {check.name}: {check.detail}")
                if not check.ok:
                    failed.append(role)
        if failed:
            raise CommandError(f"LLM check failed for: {', '.join(failed)}")
        self.stdout.write(self.style.SUCCESS("All checked roles are ready."))
