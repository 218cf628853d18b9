"""The embedded PostgreSQL: handles of killed processes, and the settings for a small machine.

Every server here runs in a var folder of its own under tmp, never the one other processes share.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tagsite.database import MB, machine_memory, server_settings
from tests.conftest import ROOT, wait_for

HOLDER = """
import sys
from pathlib import Path
from tagsite.database import embedded_database
db = embedded_database(Path(sys.argv[1]))
print(db["HOST"], db["PORT"], flush=True)
sys.stdin.readline()
"""


def hold(data_dir: Path) -> tuple[subprocess.Popen, str, str]:
    """A process holding a handle on the server under data_dir; returns it with the server's socket and port."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(data_dir)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    host, port = process.stdout.readline().split()
    return process, host, port


def release(process: subprocess.Popen) -> None:
    process.stdin.close()
    assert process.wait(30) == 0


def handles(data_dir: Path) -> list[int]:
    return json.loads((data_dir / ".handle_pids.json").read_text())


def server_running(data_dir: Path) -> bool:
    return (data_dir / "postmaster.pid").exists()


@pytest.fixture
def data_dir(tmp_path):
    var = tmp_path / "var"
    var.mkdir()
    os.chmod(tmp_path, 0o755)  # the server runs as `pgserver` when the tests run as root
    directory = var / "postgres"
    yield directory
    if server_running(directory):  # a failed test: stop the server it left
        pid = int((directory / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGINT)


def test_a_killed_holder_does_not_keep_the_server_alive(data_dir):
    first, _, _ = hold(data_dir)
    second, _, _ = hold(data_dir)
    assert sorted(handles(data_dir)) == sorted([first.pid, second.pid])
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.pid in handles(data_dir)  # it could not say goodbye
    release(second)  # the last live process leaves: the server stops
    wait_for(lambda: not server_running(data_dir), timeout=30)


def test_a_joining_process_prunes_dead_handles(data_dir):
    first, _, _ = hold(data_dir)
    first.send_signal(signal.SIGKILL)
    first.wait()
    second, _, _ = hold(data_dir)
    assert handles(data_dir) == [second.pid]
    killed_later, _, _ = hold(data_dir)
    killed_later.send_signal(signal.SIGKILL)
    killed_later.wait()
    release(second)
    wait_for(lambda: not server_running(data_dir), timeout=30)


def test_the_server_runs_with_the_small_machine_settings(data_dir):
    holder, host, port = hold(data_dir)
    try:
        with psycopg.connect(host=host, port=port, user="postgres", dbname="postgres") as conn:
            names = ("jit", "shared_buffers", "work_mem", "autovacuum_vacuum_scale_factor")
            shown = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in names}
            parallel = conn.execute("SHOW max_parallel_workers_per_gather").fetchone()[0]
    finally:
        release(holder)
    wanted = server_settings(machine_memory(), os.cpu_count())
    assert shown["jit"] == "off"
    assert parallel == wanted["max_parallel_workers_per_gather"]
    assert shown["work_mem"] == wanted["work_mem"]
    assert shown["autovacuum_vacuum_scale_factor"] == "0.02"
    assert shown["shared_buffers"] in (wanted["shared_buffers"], f"{int(wanted['shared_buffers'][:-2]) // 1024}GB")


@pytest.mark.parametrize(
    ("memory_gb", "cores", "buffers", "work_mem", "parallel"),
    [(2, 2, "256MB", "8MB", "0"), (16, 2, "2048MB", "32MB", "0"), (64, 16, "4096MB", "64MB", "2")],
)
def test_settings_scale_with_the_machine(memory_gb, cores, buffers, work_mem, parallel):
    chosen = server_settings(memory_gb * 1024 * MB, cores)
    assert (chosen["shared_buffers"], chosen["work_mem"], chosen["max_parallel_workers_per_gather"]) == (
        buffers,
        work_mem,
        parallel,
    )
