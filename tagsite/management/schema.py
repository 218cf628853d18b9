"""The one check every tagsite command that reads or writes tables runs first: is the database migrated?

Without it a command on a fresh database fails half-way with a raw `ProgrammingError` (relation does
not exist), possibly after it has copied files; with it the command stops before doing anything.
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor

MIGRATE_HINT = "run `./tagsite.sh run` once, or `manage.py migrate`"


def require_migrated_database(using: str = DEFAULT_DB_ALIAS) -> None:
    """CommandError naming what is missing and what to run, when the schema is not (fully) there."""
    try:
        executor = MigrationExecutor(connections[using])
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        empty = not executor.recorder.has_table()
    except DatabaseError as exc:
        raise CommandError(f"cannot read the database's migrations ({exc}); {MIGRATE_HINT}") from exc
    if plan:
        names = [f"{migration.app_label}.{migration.name}" for migration, _backwards in plan]
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        state = "has no tables yet" if empty else "is not up to date"
        raise CommandError(f"The database {state} ({len(names)} migrations not applied: {shown}): {MIGRATE_HINT}.")


class SchemaCommand(BaseCommand):
    """A command that needs tagsite's tables: it checks the schema after its arguments, before it does anything."""

    def execute(self, *args, **options):
        require_migrated_database(options.get("database") or DEFAULT_DB_ALIAS)
        return super().execute(*args, **options)
