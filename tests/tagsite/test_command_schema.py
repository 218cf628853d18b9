"""Every tagsite command that needs the tables says how to create them, and does nothing, on a database without them."""

import os
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from django.core.management import get_commands, load_command_class

from tagsite.management.schema import MIGRATE_HINT, SchemaCommand
from tests.conftest import ROOT, database_url
from tests.suggestions.wd14 import build_model

NEEDS_NO_SCHEMA = {"serve"}  # it migrates the database itself


def project_commands() -> dict[str, str]:
    """Command name -> app, for the commands of this project's apps (not Django's or a library's)."""
    return {name: app for name, app in get_commands().items() if (ROOT / app.replace(".", "/")).is_dir()}


def test_every_project_command_checks_the_schema_first():
    commands = project_commands()
    assert {"install_model", "import_images", "categorize_tags", "review_report"} <= set(commands)
    unchecked = [
        name
        for name, app in commands.items()
        if name not in NEEDS_NO_SCHEMA and not isinstance(load_command_class(app, name), SchemaCommand)
    ]
    assert unchecked == [], "commands that would meet a missing table with a raw ProgrammingError"


@pytest.fixture
def empty_database(django_db_blocker):
    """A fresh database on the same server as the test database: no tables at all."""
    with django_db_blocker.unblock():
        url = database_url()
    name = f"empty_{os.getpid()}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(url)
    yield urlunsplit(parts._replace(path=f"/{name}"))
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def manage(url: str, tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": url, "TAGSITE_MODELS_DIR": str(tmp_path / "models")}
    command = [sys.executable, "manage.py", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.django_db
def test_commands_on_a_database_without_tables_say_what_to_run(empty_database, tmp_path):
    source = build_model(tmp_path / "src")
    (tmp_path / "mappings.csv").write_text("danbooru_tag,internal_tag_title,action\nsmile,smile,map\n")
    (tmp_path / "library").mkdir()
    for args in [
        ("install_model", "wd", "--from", str(source)),
        ("import_tag_mappings", str(tmp_path / "mappings.csv")),
        ("import_images", str(tmp_path / "library")),
        ("categorize_tags",),
    ]:
        result = manage(empty_database, tmp_path, *args)
        assert result.returncode == 1, (args, result.stderr)
        assert "The database has no tables yet (" in result.stderr and MIGRATE_HINT in result.stderr, args
        assert "Traceback" not in result.stderr and "ProgrammingError" not in result.stderr, args
    assert not (tmp_path / "models").exists()  # install_model copied nothing
    # part of the schema (an older install): the same stop, saying it is out of date
    assert manage(empty_database, tmp_path, "migrate", "auth", "-v", "0").returncode == 0
    result = manage(empty_database, tmp_path, "review_report", "--model", "wd")
    assert result.returncode == 1 and "The database is not up to date (" in result.stderr
    assert MIGRATE_HINT in result.stderr and not (tmp_path / "models").exists()
