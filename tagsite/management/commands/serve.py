import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from tagsite.services.accounts import AccountError, ensure_superuser
from tagsite.services.jobs import fail_interrupted_jobs, start_job


def gunicorn_arguments(app: str, host: str, port: int, workers: int, access_log: Path) -> list[str]:
    """The web server's command line after the interpreter; bench/pages.py measures the server this starts.

    gunicorn's workers touch a heartbeat file at every event they handle: on tmpfs (/dev/shm) that costs
    nothing, on disk it was 1-2 ms of a request's CPU."""
    arguments = ["-m", "gunicorn", app, "--bind", f"{host}:{port}", "--workers", str(workers), "--threads", "4",
                 "--access-logfile", str(access_log)]  # fmt: skip
    if Path("/dev/shm").is_dir():
        arguments += ["--worker-tmp-dir", "/dev/shm"]
    return arguments


def hold_instance_lock(var_dir: Path, description: str) -> int:
    """Take `var/serve.lock`, or stop with the name of the instance holding it.

    A live instance is one that holds this lock, not one that answers on a port: a second `run` on the
    same folder must not fail the first one's running jobs or start a second worker. The kernel releases
    the lock when the last process holding it ends; the web server and the worker inherit it, so one
    that outlives a killed `serve` still counts. Returns the lock's file descriptor.
    """
    fd = os.open(var_dir / "serve.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 500, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise CommandError(
            f"tagsite is already running on {var_dir} ({holder}). Stop it first (Ctrl-C in its terminal), "
            "or give this instance its own TAGSITE_VAR_DIR."
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, description.encode(), 0)
    return fd


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def remember_run_folder(folder: str) -> None:
    """Folders given to `run` are import roots of the web from now on (unless TAGSITE_IMPORT_ROOTS is set).

    Written before the web server and the worker start, so their settings read it.
    """
    known = settings.RUN_FOLDERS_FILE.read_text().splitlines() if settings.RUN_FOLDERS_FILE.exists() else []
    if folder not in known:
        settings.RUN_FOLDERS_FILE.write_text("".join(f"{line}\n" for line in [*known, folder]))


class Command(BaseCommand):
    help = (
        "Run tagsite: migrate, make sure an admin exists, start the web server and a Celery worker, "
        "optionally import a folder; Ctrl-C stops everything."
    )

    def add_arguments(self, parser):
        parser.add_argument("folder", nargs="?", help="A folder to import once the worker is up.")
        parser.add_argument("--host", default=os.environ.get("TAGSITE_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("TAGSITE_PORT", 8000)))
        parser.add_argument("--web-workers", type=int, default=int(os.environ.get("TAGSITE_WEB_WORKERS", 2)))
        parser.add_argument(
            "--worker-concurrency", type=int, default=int(os.environ.get("TAGSITE_WORKER_CONCURRENCY", 2))
        )

    def handle(self, *args, folder, host, port, web_workers, worker_concurrency, **options):
        if folder and not os.path.isdir(folder):
            raise CommandError(f"not a folder: {folder}")
        self.lock_fd = hold_instance_lock(settings.VAR_DIR, f"pid {os.getpid()}, http://{host}:{port}/")
        if port_in_use(host, port):
            raise CommandError(f"{host}:{port} is in use: is tagsite already running? (--port picks another)")
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        try:
            username, password = ensure_superuser()
        except AccountError as exc:
            raise CommandError(str(exc)) from exc
        if settings.CELERY_BROKER_URL.startswith("filesystem://") and (stale := fail_interrupted_jobs()):
            self.stdout.write(self.style.WARNING(f"{stale} job(s) interrupted by the last stop are marked failed."))
        if folder:
            remember_run_folder(os.path.abspath(folder))
        logs = settings.VAR_DIR / "log"  # the console is the user's: the children's chatter goes here
        logs.mkdir(exist_ok=True)
        children = [
            self.spawn(
                "worker",
                ["-m", "celery", "-A", "tagsite", "worker", "-Q", "default,gpu,llm,io", "--loglevel=INFO",
                 "--concurrency", str(worker_concurrency), "--hostname", "tagsite@%h"],
            ),
            self.spawn(
                "web", gunicorn_arguments("tagsite.wsgi:application", host, port, web_workers, logs / "access.log")
            ),
        ]  # fmt: skip
        self.stdout.write(self.style.SUCCESS(f"tagsite is running at http://{host}:{port}/ (Ctrl-C stops it)"))
        self.stdout.write(f"Logs of the worker and the web server: {logs}/")
        if password:
            self.stdout.write(self.style.WARNING(f"Created admin user '{username}' with password: {password}"))
            self.stdout.write("This password is shown only once.")
        if folder:
            from tagsite.tasks import import_folder_task

            job = start_job("import_images", import_folder_task, {"path": os.path.abspath(folder), "roots": None})
            self.stdout.write(f"Importing {folder} as job #{job.pk}: see http://{host}:{port}/jobs/")
        self.wait(children)

    def spawn(self, name: str, arguments: list[str]) -> subprocess.Popen:
        """A child whose own output (banners, shutdown lines, a crash) goes to var/log/NAME.log, not the console."""
        with open(settings.VAR_DIR / "log" / f"{name}.log", "ab") as output:
            return subprocess.Popen(
                [sys.executable, *arguments],
                cwd=settings.BASE_DIR,
                start_new_session=True,
                pass_fds=[self.lock_fd],
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def wait(self, children: list[subprocess.Popen]) -> None:
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.3)
        if not stopping:
            self.stderr.write(f"The worker or the web server exited (see {settings.VAR_DIR / 'log'}/); stopping.")
        self.stdout.write("Stopping web server and worker...")
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for child in children:
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.stdout.write("Stopped.")
