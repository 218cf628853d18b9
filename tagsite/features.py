"""The registration points of the feature apps: what the core needs to know about them, declared by each.

The core names no feature app. An app declares on its AppConfig, as class attributes:

- `task_routes`: Celery routes of its tasks, `{"categorization.tasks.*": {"queue": "llm"}}`;
- `moderator_permissions`: what the `moderators` group needs for its screens, `["categorization.view_tagcategory"]`;
- `llm_roles`: the LLM registry roles its stages use, each with the capability it needs from the endpoint's
  backend, `{"categorize": "chat"}` (`chat` or `embed`, see `tagsite.ai.base.CAPABILITIES`);
- `tag_parents`: the dotted path of a function `tag ids -> {tag id: parent name}`, the parents written to files
  as `XMP-lr:HierarchicalSubject` (`Parent|tag`).

The core reads them from every installed app (its own list of moderator permissions is `MODERATOR_PERMISSIONS`
in settings), so adding a stage touches only its app.
"""

from celery.app.routes import MapRoute
from django.apps import apps
from django.conf import settings


def _declared(attribute: str) -> list[tuple[str, object]]:
    configs = apps.get_app_configs()
    return [(config.label, getattr(config, attribute)) for config in configs if hasattr(config, attribute)]


def task_routes() -> dict[str, dict]:
    """Every app's task routes, by task name or glob."""
    routes: dict[str, dict] = {}
    for _, declared in _declared("task_routes"):
        routes.update(declared)
    return routes


def moderator_permissions() -> list[str]:
    """The core's permissions for moderators, then every app's (`app_label.codename`)."""
    declared = [name for _, names in _declared("moderator_permissions") for name in names]
    return [*settings.MODERATOR_PERMISSIONS, *declared]


def llm_roles() -> dict[str, str]:
    """Role -> capability, from every app; two apps claiming one role is a configuration error."""
    roles: dict[str, str] = {}
    owners: dict[str, str] = {}
    for label, declared in _declared("llm_roles"):
        for role, capability in declared.items():
            if role in owners:
                raise ValueError(f"LLM role {role!r} is declared by both {owners[role]} and {label}")
            roles[role], owners[role] = capability, label
    return roles


def llm_role_choices() -> list[tuple[str, str]]:
    """`LLMRole.role`'s choices: the roles the installed apps declare (a callable, so no migration per role)."""
    return [(role, role) for role in sorted(llm_roles())]


def tag_parents(tag_ids: list[int]) -> dict[int, str]:
    """Each tag's parent name from the first app that names one (metadata write-back's hierarchy)."""
    from django.utils.module_loading import import_string

    parents: dict[int, str] = {}
    for _, path in _declared("tag_parents"):
        for tag_id, name in import_string(path)(tag_ids).items():
            parents.setdefault(tag_id, name)
    return parents


def route_task(name, args, kwargs, options, task=None, **kw):
    """The Celery router settings name: the queue an app declared for the task, or None (the default queue)."""
    return MapRoute(task_routes())(name)
