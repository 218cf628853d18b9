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

from tests.conftest import ROOT, wait_for
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
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)
    assert "Stopped." in log.read_text()
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
