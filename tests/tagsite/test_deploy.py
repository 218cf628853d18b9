import os
import subprocess
import sys

from tests.conftest import ROOT


def test_check_deploy_is_clean_with_production_settings():
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_ALLOW_ASYNC_UNSAFE"}  # a test-only flag
    env.update(TAGSITE_PRODUCTION="1", SECRET_KEY="x" * 20 + "a-long-random-production-secret-key-value")
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret():
    env = {key: value for key, value in os.environ.items() if key != "SECRET_KEY"}
    env["TAGSITE_PRODUCTION"] = "1"
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "SECRET_KEY" in result.stderr
