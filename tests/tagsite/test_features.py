"""The core's registration points: each app declares its task routes, moderator permissions and LLM roles."""

import pytest
from django.apps import apps
from django.conf import settings

from tagsite.celery import app
from tagsite.features import llm_role_choices, llm_roles, moderator_permissions, task_routes
from tagsite.models import LLMEndpoint, LLMRole
from tagsite.services.accounts import ensure_moderators_group


def queue_of(task_name: str) -> str:
    return app.amqp.router.route({}, task_name)["queue"].name


@pytest.mark.parametrize(
    ("task_name", "queue"),
    [
        ("suggestions.tasks.infer_tags", "gpu"),
        ("suggestions.tasks.infer_backlog", "gpu"),
        ("categorization.tasks.categorize_tags_task", "llm"),
        ("emotion.tasks.label_faces", "llm"),
        ("tagsite.tasks.import_folder_task", "default"),
    ],
)
def test_tasks_go_to_the_queue_their_app_declares(task_name, queue):
    assert queue_of(task_name) == queue


def test_the_core_settings_name_no_feature_app():
    assert settings.CELERY_TASK_ROUTES == ["tagsite.features.route_task"]
    assert all(name.startswith("tagsite.") for name in settings.MODERATOR_PERMISSIONS)
    assert "categorization.tasks.*" in task_routes() and "suggestions.tasks.infer_*" in task_routes()


def test_a_new_app_registers_a_route_a_role_and_a_permission_without_touching_the_core(monkeypatch):
    dedupe = apps.get_app_config("dedupe")
    monkeypatch.setattr(type(dedupe), "task_routes", {"dedupe.tasks.*": {"queue": "llm"}}, raising=False)
    monkeypatch.setattr(type(dedupe), "llm_roles", {"embed": "embed", "merge_names": "chat"})
    monkeypatch.setattr(type(dedupe), "moderator_permissions", ["dedupe.review_merge"], raising=False)
    assert queue_of("dedupe.tasks.find_duplicates") == "llm"
    assert llm_roles()["merge_names"] == "chat" and ("merge_names", "merge_names") in llm_role_choices()
    assert "dedupe.review_merge" in moderator_permissions()  # wherever dedupe sits among the apps


def test_two_apps_claiming_one_role_is_an_error(monkeypatch):
    monkeypatch.setattr(type(apps.get_app_config("emotion")), "llm_roles", {"embed": "embed"})
    with pytest.raises(ValueError, match="'embed' is declared by both"):
        llm_roles()


@pytest.mark.django_db
def test_the_moderators_group_gets_every_apps_permissions():
    group = ensure_moderators_group()
    held = {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}
    assert {"tagsite.view_job", "categorization.categorize_tags", "suggestions.view_tagsuggestion"} <= held


@pytest.mark.django_db
def test_a_role_row_must_name_a_declared_role(admin_client):
    """The admin offers (and accepts) the roles the apps declare, not a list of stages in the core."""
    endpoint = LLMEndpoint.objects.create(name="lab", model="m")
    LLMRole.objects.filter(role="categorize").delete()
    form = admin_client.get("/admin/tagsite/llmrole/add/").content.decode()
    assert all(f'value="{role}"' in form for role in llm_roles())
    refused = admin_client.post("/admin/tagsite/llmrole/add/", {"role": "painting", "endpoint": endpoint.pk})
    assert refused.status_code == 200 and not LLMRole.objects.filter(role="painting").exists()
    admin_client.post("/admin/tagsite/llmrole/add/", {"role": "categorize", "endpoint": endpoint.pk})
    assert LLMRole.objects.get(role="categorize").endpoint == endpoint
    assert {"categorize", "emotion", "embed"} <= {choice for choice, _ in llm_role_choices()}
