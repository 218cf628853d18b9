"""The README's run command, end to end: embedded PostgreSQL, migrations, admin, web server,
a Celery worker on the default filesystem broker, a folder import, and a clean stop on Ctrl-C."""

import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest

from tagsite.management.commands.serve import hold_instance_lock
from tagsite.models import Job
from tagsite.services.jobs import create_job
from tests.conftest import ROOT, database_url, wait_for
from tests.factories import make_jpeg


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Browser:
    """A cookie-keeping HTTP client for the session login (standard library only)."""

    def __init__(self, base: str):
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def get(self, path: str) -> tuple[int, str]:
        try:
            with self.opener.open(self.base + path, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def login(self, username: str, password: str) -> None:
        self.get("/accounts/login/")
        token = next(cookie.value for cookie in self.cookies if cookie.name == "csrftoken")
        data = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": token})
        request = urllib.request.Request(
            self.base + "/accounts/login/", data=data.encode(), headers={"Referer": self.base}
        )
        self.opener.open(request, timeout=10)


@pytest.mark.slow
def test_run_command_serves_imports_and_stops_cleanly(tmp_path):
    folder = tmp_path / "Pictures"
    folder.mkdir()
    for index in range(3):
        make_jpeg(folder / f"p{index}.jpg", color=(index * 60, 100, 200))
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CELERY_", "DATABASE_URL"))}
    env.update(TAGSITE_VAR_DIR=str(tmp_path / "var"), TAGSITE_MEDIA_DIR=str(tmp_path / "media"))
    env.pop("TAGSITE_ADMIN_PASSWORD", None)
    log = tmp_path / "serve.log"
    server = subprocess.Popen(
        [sys.executable, "manage.py", "serve", str(folder), "--port", str(port), "--web-workers", "1"],
        cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        password = wait_for(lambda: re.search(r"password: (\S+)", log.read_text()), timeout=120).group(1)
        client = Browser(f"http://127.0.0.1:{port}")
        wait_for(lambda: _answers(client), timeout=60)
        assert client.get("/")[0] == 200 and "Log in" in client.get("/")[1]  # anonymous: the login page
        client.login("admin", password)

        def import_finished():
            jobs = json.loads(client.get("/api/jobs/")[1])["results"]
            return jobs and jobs[0]["status"] in ("succeeded", "failed") and jobs[0]

        job = wait_for(import_finished, timeout=90, interval=0.5)
        assert job["status"] == "succeeded" and job["counts"]["new"] == 3, job
        assert json.loads(client.get("/api/images/")[1])["count"] == 3
        children = psutil.Process(server.pid).children(recursive=True)
        assert len(children) >= 3  # gunicorn, celery and their workers

        second = subprocess.run(
            [sys.executable, "manage.py", "serve", "--port", str(free_port())],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert (
            second.returncode != 0
            and f"tagsite is already running on {tmp_path / 'var'} (pid {server.pid}" in second.stderr
        )
        assert len(psutil.Process(server.pid).children(recursive=True)) == len(children)  # no second worker
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)
    console = log.read_text()
    assert "Stopped." in console
    noise = ["No hostname was supplied", "superuser privileges", "GET /", "Booting worker", "celery@", "Traceback"]
    assert not [line for line in console.splitlines() if any(word in line for word in noise)], console
    time.sleep(1)
    assert not [child for child in children if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]
    assert not (Path(tmp_path / "var" / "postgres" / "postmaster.pid")).exists()  # embedded PostgreSQL stopped


def _answers(client: Browser) -> bool:
    try:
        return client.get("/accounts/login/")[0] == 200
    except OSError:
        return False


def test_run_command_refuses_a_port_in_use(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "manage.py", "serve", "--port", str(port)],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert result.returncode != 0 and "is in use: is tagsite already running?" in result.stderr


@pytest.mark.django_db(transaction=True)
def test_a_second_serve_on_the_same_var_folder_stops_at_once_and_leaves_the_first_alone(tmp_path):
    """A live instance is the one holding var/serve.lock, whatever its port: the second stops before it
    touches the first one's jobs (a filesystem-broker start fails running jobs) or starts a worker."""
    var = tmp_path / "var"
    var.mkdir()
    job = create_job("import_images", {"path": str(tmp_path)})
    Job.objects.filter(pk=job.pk).update(status="running")
    env = {key: value for key, value in os.environ.items() if not key.startswith("CELERY_")}  # the filesystem broker
    env.update(TAGSITE_VAR_DIR=str(var), DATABASE_URL=database_url())
    first = hold_instance_lock(var, "pid 4242, http://127.0.0.1:8000/")
    try:
        result = subprocess.run(
            [sys.executable, "manage.py", "serve", "--port", str(free_port())],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        os.close(first)
    assert result.returncode != 0, result.stdout
    assert f"tagsite is already running on {var} (pid 4242, http://127.0.0.1:8000/)" in result.stderr
    assert "is running at" not in result.stdout and "interrupted" not in result.stdout
    assert Job.objects.get(pk=job.pk).status == "running"  # the first instance's job is left alone
    os.close(hold_instance_lock(var, "the first has stopped"))  # its lock went with it
