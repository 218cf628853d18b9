"""The migration graph: the core app depends on no feature app, the app graph has no cycle, models match migrations."""

from pathlib import Path

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db.migrations.loader import MigrationLoader

CORE = "tagsite"
ROOT = Path(__file__).resolve().parent.parent.parent


def project_apps() -> set[str]:
    """This repository's apps (a top-level folder each), not Django's or the libraries'."""
    return {config.label for config in apps.get_app_configs() if Path(config.path).parent == ROOT}


def app_dependencies(loader: MigrationLoader) -> dict[str, set[str]]:
    """For each project app, the other project apps its migrations depend on (read from the loader's graph)."""
    ours = project_apps()
    edges: dict[str, set[str]] = {label: set() for label in ours}
    for key, node in loader.graph.node_map.items():
        for parent in node.parents:
            if key[0] in ours and parent.key[0] in ours and parent.key[0] != key[0]:
                edges[key[0]].add(parent.key[0])
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str]:
    """One cycle of the graph as a path of app labels, or [] when it has none."""
    done: set[str] = set()

    def visit(label: str, path: list[str]) -> list[str]:
        if label in path:
            return path[path.index(label) :] + [label]
        if label in done:
            return []
        for parent in sorted(edges.get(label, ())):
            if cycle := visit(parent, path + [label]):
                return cycle
        done.add(label)
        return []

    for label in sorted(edges):
        if cycle := visit(label, []):
            return cycle
    return []


def test_the_core_depends_on_no_feature_app():
    edges = app_dependencies(MigrationLoader(None, ignore_no_migrations=True))
    assert {"categorization", "suggestions"} <= set(edges)
    assert edges[CORE] == set(), f"core migrations depend on {edges[CORE]}"
    assert find_cycle(edges) == []


def test_cycle_finder_reports_a_cycle_between_apps():
    """The old graph: tagsite/0004 -> categorization/0001 -> tagsite/0003."""
    assert find_cycle({"tagsite": {"categorization"}, "categorization": {"tagsite"}, "suggestions": {"tagsite"}}) in (
        ["tagsite", "categorization", "tagsite"],
        ["categorization", "tagsite", "categorization"],
    )
    assert find_cycle({"tagsite": set(), "categorization": {"tagsite"}, "suggestions": {"tagsite"}}) == []


@pytest.mark.django_db
@pytest.mark.parametrize("app_label", [CORE, "categorization", "suggestions"])
def test_models_match_their_migrations(app_label):
    call_command("makemigrations", app_label, check=True, dry_run=True, verbosity=0)
