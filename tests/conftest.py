import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.factories import make_jpeg

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["tests.browser"]


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """A test database of this run's own, so test runs side by side do not collide."""
    from django.conf import settings

    settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = f"test_tagsite_{os.getpid()}"


def database_url() -> str:
    """The test database as a DATABASE_URL, for processes the tests start."""
    from django.db import connection

    db = connection.settings_dict
    host = quote(db["HOST"], safe="") if db["HOST"].startswith("/") else db["HOST"]
    return f"postgresql://{db['USER']}:{quote(db.get('PASSWORD') or '')}@{host}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real Celery worker process on Redis, consuming every queue, against the test database."""
    from tagsite.celery import app

    log = tmp_path_factory.mktemp("worker") / "worker.log"
    with django_db_blocker.unblock():
        env = {**os.environ, "DATABASE_URL": database_url()}
    worker = start_worker(env, log)
    yield worker
    stop_worker(worker)
    purge_broker(app)


def start_worker(env: dict, log: Path, name: str = "test") -> subprocess.Popen:
    from tagsite.celery import app

    command = [
        sys.executable, "-m", "celery", "-A", "tagsite", "worker", "-Q", "default,gpu,llm,io", "--concurrency", "1",
        "--pool", "prefork", "--without-mingle", "--without-gossip", "--loglevel", "INFO",
        "--hostname", f"{name}-{os.getpid()}@%h",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Celery worker exited early:\n{log.read_text()}")
        replies = app.control.ping(timeout=0.5, destination=[f"{name}-{os.getpid()}@{os.uname().nodename}"])
        if replies:
            return process
    process.kill()
    raise RuntimeError(f"Celery worker did not come up:\n{log.read_text()}")


def stop_worker(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def purge_broker(app) -> None:
    import redis

    prefix = os.environ["CELERY_KEY_PREFIX"]
    client = redis.Redis.from_url(app.conf.broker_url)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)


def wait_for(predicate, timeout: float = 30, interval: float = 0.1):
    """Poll until `predicate()` is truthy; return its value or fail with a clear message."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s: {predicate}")


@pytest.fixture
def image_folder(tmp_path):
    """A folder with three small, different JPEGs."""
    folder = tmp_path / "library"
    folder.mkdir()
    for index, color in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        make_jpeg(folder / f"photo{index}.jpg", color=color)
    return folder


@pytest.fixture(autouse=True)
def fresh_search_counts():
    """Search counts are cached per process for a minute (`lists.search_count`): each test counts its own data."""
    from django.core.cache import caches

    caches["counts"].clear()
