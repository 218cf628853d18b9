"""Every moderator page and API at scale: latency, errors, queries and server CPU per request.

    .venv/bin/python bench/pages.py [--images 20000] [--suggestions 200000] [--reuse] [--requests 20]
                                    [--clients 16] [--only SUBSTRING] [--json FILE]

Seeds a database with `seed_demo` (or, with --reuse, keeps and reuses `bench_pages_<images>_<suggestions>`),
starts the web server as `serve` does (gunicorn, TAGSITE_WEB_WORKERS processes with 4 threads), logs in
and drives every page and endpoint with 1 client, then with 16 clients back to back. Per endpoint it
prints p50/p95/max latency, errors, database queries per request (counted in the web process) and the
server's CPU per request: the web workers' and this database's backends' process CPU from /proc,
before and after, which does not depend on what else runs on the machine.
"""

import argparse
import base64
import gc
import itertools
import json
import logging
import math
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PASSWORD = "bench-pages-password"
BATCH = 32


def application(environ, start_response):
    """The site's WSGI application, plus the number of database queries as a response header."""
    from django.db import connection

    from tagsite.wsgi import application as site

    queries = 0

    def count(execute, sql, params, many, context):
        nonlocal queries
        queries += 1
        return execute(sql, params, many, context)

    def respond(status, headers, exc_info=None):
        return start_response(status, [*headers, ("X-Bench-Queries", str(queries))], exc_info)

    with connection.execute_wrapper(count):
        return site(environ, respond)


@dataclass
class Endpoint:
    name: str
    path: str
    method: str = "GET"
    body: object = None  # a callable giving each request's JSON body
    kind: str = "api"  # api, page, file or action (a decision): the goal differs


@dataclass
class Result:
    latencies: list = field(default_factory=list)
    errors: int = 0
    queries: list = field(default_factory=list)
    cpu_ms: float = 0.0
    first_error: str = ""

    def add(self, seconds: float, status: int, queries: str | None, text: str) -> None:
        self.latencies.append(seconds * 1000)
        if queries is not None:
            self.queries.append(int(queries))
        if status >= 400:
            self.errors += 1
            self.first_error = self.first_error or f"{status} {text[:120]!r}"

    def summary(self) -> dict:
        ordered = sorted(self.latencies)
        pick = lambda q: ordered[math.ceil(q * len(ordered)) - 1]  # noqa: E731 - nearest rank: of 20, the 19th
        return {
            "p50": statistics.median(ordered),
            "p95": pick(0.95),
            "max": ordered[-1],
            "errors": self.errors,
            "queries": max(self.queries) if self.queries else None,
            "cpu_ms": self.cpu_ms / len(ordered),
        }


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class ServerCPU:
    """CPU of the web server (master and workers) and of the database backends serving this database."""

    def __init__(self, web_pid: int, database: str):
        self.web_pid, self.database = web_pid, database

    def pids(self) -> list[int]:
        import psutil

        web = [self.web_pid, *(child.pid for child in psutil.Process(self.web_pid).children(recursive=True))]
        backends = []
        for process in psutil.process_iter(["cmdline"]):
            line = " ".join(process.info["cmdline"] or [])
            # the backends serving this database's connections; not an autovacuum worker, which the approvals'
            # dead rows start now and then, and whose CPU would land on whatever endpoint runs at that moment
            backend = line.startswith("postgres: ") and not line.startswith("postgres: autovacuum")
            if backend and f" {self.database} " in f"{line} ":
                backends.append(process.pid)
        return web + backends

    def snapshot(self) -> dict[int, float]:
        return {pid: process_cpu(pid) for pid in self.pids()}

    @staticmethod
    def spent(before: dict[int, float], after: dict[int, float]) -> float:
        """CPU seconds between two snapshots; a backend that started in between counts whole, one that ended
        in between (a closed connection) loses only what it did after the first snapshot."""
        return sum(max(seconds - before.get(pid, 0.0), 0.0) for pid, seconds in after.items())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_web(database_url: str, port: int, log: Path) -> subprocess.Popen:
    """gunicorn as `serve` starts it, with the query-counting wrapper around the same application."""
    from tagsite.management.commands.serve import gunicorn_arguments

    workers = int(os.environ.get("TAGSITE_WEB_WORKERS", "2"))
    env = {**os.environ, "DATABASE_URL": database_url}
    arguments = gunicorn_arguments("bench.pages:application", "127.0.0.1", port, workers, log.with_suffix(".access"))
    command = [sys.executable, *arguments]
    web = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/accounts/login/", timeout=2)
            return web
        except httpx.HTTPError:
            if web.poll() is not None:
                break
            time.sleep(0.3)
    web.kill()
    raise SystemExit(f"the web server did not start:\n{log.read_text()[-3000:]}")


def login(base: str, username: str):
    import httpx

    client = httpx.Client(base_url=base, timeout=60, follow_redirects=False)
    client.get("/accounts/login/")
    token = client.cookies["csrftoken"]
    response = client.post(
        "/accounts/login/",
        data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token},
        headers={"Referer": base},
    )
    if response.status_code != 302:
        raise SystemExit(f"login failed: {response.status_code}")
    return client


def clone(client, base: str):
    import httpx

    copy = httpx.Client(base_url=base, timeout=120, follow_redirects=False)
    copy.cookies = httpx.Cookies(client.cookies)
    return copy


def deepen(client, path: str, fraction: float = 0.8, top_id: int = 0) -> str:
    """A link to a page about `fraction` deep into the list at `path`, whatever its pagination:
    page numbers (from the count), a DRF cursor or an `after`/`before` key (scaled from the first next link)."""
    response = client.get(path, headers={"Accept": "application/json, text/html"})
    text = response.text
    try:
        data = response.json()
        link = data.get("next") or ""
        count = data.get("count")
    except ValueError:
        found = re.search(r'href="([^"]*(?:page|cursor|after)=[^"]*)"[^>]*>\s*(?:next|older|›|»|→)', text, re.I)
        found = found or re.search(r'rel="next"[^>]*href="([^"]+)"|href="([^"]+)"[^>]*rel="next"', text)
        link = next((group for group in (found.groups() if found else ()) if group), "")
        link = link.replace("&amp;", "&")
        data, count = {}, None
    if not link:
        return path
    parsed = urllib.parse.urlsplit(link)
    query = dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True))
    if "page" in query:
        per_page = max(len(data.get("results", [])), 1) if count is not None else 50
        last = (count // per_page) if count else 2000
        query["page"] = str(max(2, int(last * fraction)))
    elif "cursor" in query:
        position = dict(urllib.parse.parse_qsl(base64.b64decode(query["cursor"]).decode()))
        ids = [row.get("id") for row in data.get("results", []) if isinstance(row, dict)]
        ascending = len(ids) > 1 and ids[0] < ids[-1]
        if position.get("p", "").lstrip("-").isdigit():
            p = int(position["p"])
            position["p"] = str(int(top_id * fraction) if ascending and top_id else int(p * (1 - fraction)))
        query["cursor"] = base64.b64encode(urllib.parse.urlencode(position).encode()).decode()
    else:
        for key in ("after", "before"):
            if query.get(key, "").isdigit():
                query[key] = str(int(int(query[key]) * (1 - fraction)))
    return urllib.parse.urlunsplit(("", "", parsed.path or path.split("?")[0], urllib.parse.urlencode(query), ""))


def endpoints(client, models: dict) -> list[Endpoint]:
    """Every moderator page and API, with filters drawn from the seeded data."""
    from django.db.models import Count

    Tag, TagSuggestion = models["Tag"], models["TagSuggestion"]
    ExtendedCategory, Image = models["ExtendedCategory"], models["Image"]
    top = list(Tag.objects.filter(danbooru_category=0).order_by("-usage_count").values_list("name", flat=True)[:40])
    one, two, three, unpopular, rare = top[0], top[5], top[12], top[25], top[39]
    character = Tag.objects.filter(danbooru_category=4).order_by("-usage_count").values_list("name", flat=True).first()
    category = ExtendedCategory.objects.order_by("code").values_list("code", flat=True).first()
    model = TagSuggestion.objects.values("model_version__name").annotate(n=Count("id")).order_by("-n").first()
    model = model["model_version__name"] if model else ""
    image = Image.objects.filter(suggestions__status="pending").order_by("-id").values_list("id", flat=True).first()
    pool = iter(approval_pool(TagSuggestion, top[:20]))
    approve = lambda: {"ids": list(itertools.islice(pool, BATCH)), "status": "approved"}  # noqa: E731
    fields = {f.name for f in TagSuggestion._meta.get_fields()}
    last_suggestion = TagSuggestion.objects.order_by("-id").values_list("id", flat=True).first() or 0
    producer = TagSuggestion.objects.values_list("producer_id", flat=True).first() if "producer" in fields else ""
    q = urllib.parse.quote
    listed = [
        Endpoint("review page", "/suggestions/", kind="page"),
        Endpoint("review page, model", f"/suggestions/?model={q(model)}", kind="page"),
        Endpoint("review page, tag", f"/suggestions/?tag={q(one)}", kind="page"),
        Endpoint("review page, confidence", "/suggestions/?min_confidence=0.8", kind="page"),
        Endpoint("review page, deep", deepen(client, "/suggestions/"), kind="page"),
        Endpoint("review API", "/api/suggestions/"),
        Endpoint("review API, deep", deepen(client, "/api/suggestions/")),
        Endpoint("review API, model", f"/api/suggestions/?model={q(model)}"),
        Endpoint("review API, tag", f"/api/suggestions/?tag={q(one[:4])}"),
        Endpoint("review API, confidence", "/api/suggestions/?min_confidence=0.5&max_confidence=0.7"),
        Endpoint("review API, approved", "/api/suggestions/?status=approved"),
        Endpoint("review API, one image", f"/api/suggestions/?image={image}"),
        Endpoint("approve 32", "/api/suggestions/decide/", "POST", approve, kind="action"),
        Endpoint("review hub", "/review/", kind="page"),
        Endpoint("review core API", "/api/review/tagsuggestion/?status=pending"),
        Endpoint(
            "review core API, deep", deepen(client, "/api/review/tagsuggestion/?status=pending", top_id=last_suggestion)
        ),
        Endpoint("review core API, tag", f"/api/review/tagsuggestion/?status=pending&tag={q(one)}"),
        Endpoint("review core API, producer", f"/api/review/tagsuggestion/?status=pending&producer={producer}"),
        Endpoint("review core API, confidence", "/api/review/tagsuggestion/?status=pending&min_confidence=0.8"),
        Endpoint("review core approve 32", "/api/review/tagsuggestion/decide/", "POST", approve, kind="action"),
        Endpoint("review core API, proposals", "/api/review/categoryproposal/?status=pending"),
        Endpoint("library", "/", kind="page"),
        Endpoint("library, 1 tag", f"/?q={q(one)}", kind="page"),
        Endpoint("library, 2 tags", f"/?q={q(one)}+{q(two)}", kind="page"),
        Endpoint("library, 3 tags", f"/?q={q(one)}+{q(two)}+{q(three)}", kind="page"),
        Endpoint("library, negation", f"/?q={q(one)}+-{q(two)}", kind="page"),
        Endpoint("library, any of", f"/?q=~{q(unpopular)}+~{q(rare)}", kind="page"),
        Endpoint("library, character", f"/?q={q(character or one)}", kind="page"),
        Endpoint("library, deep", deepen(client, "/"), kind="page"),
        Endpoint("images API", "/api/images/"),
        Endpoint("images API, 1 tag", f"/api/images/?tags={q(one)}"),
        Endpoint("images API, 3 tags", f"/api/images/?tags={q(one)},{q(two)},{q(three)}"),
        Endpoint("images API, negation", f"/api/images/?tags={q(one)}&exclude={q(two)}"),
        Endpoint("images API, any of", f"/api/images/?any={q(unpopular)},{q(rare)}"),
        Endpoint("images API, deep", deepen(client, "/api/images/")),
        Endpoint("thumbnail", f"/images/{image}/thumbnail.jpg", kind="file"),
        Endpoint("autocomplete", f"/api/tags/autocomplete/?q={q(one[:2])}"),
        Endpoint("autocomplete, 4 letters", f"/api/tags/autocomplete/?q={q(two[:4])}"),
        Endpoint("tags API", "/api/tags/"),
        Endpoint("tag_categorize", "/tag_categorize", kind="page"),
        Endpoint("tag_categorize, search", f"/tag_categorize?q={q(one[:3])}", kind="page"),
        Endpoint("tag_categorize, category", f"/tag_categorize?category={category}", kind="page"),
        Endpoint("tag_categorize, uncategorised", "/tag_categorize?state=uncategorised", kind="page"),
        Endpoint("tag_categorize, proposals", "/tag_categorize?state=proposal", kind="page"),
        Endpoint("tag_categorize, deep", deepen(client, "/tag_categorize"), kind="page"),
        Endpoint("tag-categories API", "/api/tag-categories/"),
        Endpoint("tag-categories API, search", f"/api/tag-categories/?q={q(one[:3])}"),
        Endpoint("tag-categories API, category", f"/api/tag-categories/?category={category}"),
        Endpoint("tag-categories API, proposals", "/api/tag-categories/?state=proposal"),
        Endpoint("tag-categories API, deep", deepen(client, "/api/tag-categories/")),
        Endpoint("proposals API, pending", "/api/category-proposals/?status=pending"),
        Endpoint("proposals API, category", f"/api/category-proposals/?category={category}"),
        Endpoint("categories API", "/api/categories/"),
        Endpoint("jobs page", "/jobs/", kind="page"),
        Endpoint("jobs API", "/api/jobs/"),
        Endpoint("admin images", "/admin/tagsite/image/", kind="page"),
        Endpoint("admin images, search", f"/admin/tagsite/image/?q={q(one)}", kind="page"),
        Endpoint("admin tags", "/admin/tagsite/tag/", kind="page"),
        Endpoint("admin tags, search", f"/admin/tagsite/tag/?q={q(two[:5])}", kind="page"),
        Endpoint("admin suggestions", "/admin/suggestions/tagsuggestion/", kind="page"),
        Endpoint("admin suggestions, search", f"/admin/suggestions/tagsuggestion/?q={q(one)}", kind="page"),
        Endpoint("admin proposals", "/admin/categorization/categoryproposal/", kind="page"),
    ]
    return listed


def approval_pool(TagSuggestion, tags: list[str]) -> list[int]:
    """Pending suggestions of the most used tags, shuffled: concurrent batches share tags (the deadlock case)."""
    return list(
        TagSuggestion.objects.filter(status="pending", tag__name__in=tags)
        .order_by("?")
        .values_list("id", flat=True)[:40_000]
    )


def send(client, endpoint: Endpoint, body, headers: dict):
    """One request. A GET whose kept-alive connection the server closed just as it was sent is sent again on
    a new connection, as browsers do (gunicorn closes idle connections after 2 s; that race is no error)."""
    import httpx

    try:
        return client.request(endpoint.method, endpoint.path, json=body, headers=headers)
    except (httpx.RemoteProtocolError, httpx.ReadError):
        if endpoint.method != "GET":
            raise
        return client.request(endpoint.method, endpoint.path, headers=headers)


def drive(endpoint: Endpoint, clients: list, requests: int, cpu: ServerCPU) -> Result:
    """`requests` requests per client, all clients at once, back to back."""
    result, lock = Result(), threading.Lock()

    def one(client) -> None:
        for _ in range(requests):
            body = endpoint.body() if endpoint.body else None
            headers = {"X-CSRFToken": client.cookies.get("csrftoken", ""), "Referer": str(client.base_url)}
            started = time.perf_counter()
            try:
                response = send(client, endpoint, body, headers)
                status, queries, text = response.status_code, response.headers.get("X-Bench-Queries"), response.text
            except Exception as exc:  # noqa: BLE001 - a timeout or a dropped connection is an error of this request
                status, queries, text = 599, None, repr(exc)
            elapsed = time.perf_counter() - started
            with lock:
                result.add(elapsed, status, queries, text)

    before = cpu.snapshot()
    threads = [threading.Thread(target=one, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.cpu_ms = cpu.spent(before, cpu.snapshot()) * 1000
    return result


# (server CPU ms, 1-client p95 ms, many-client p95 ms): the issue sets CPU goals for lists and pages, not decisions
GOALS = {"api": (15, 100, 400), "page": (30, 100, 400), "file": (15, 100, 400), "action": (None, 100, 400)}


def print_table(rows: list[tuple[Endpoint, dict, dict]], clients: int) -> None:
    columns = f"{'p50':>6} {'p95':>6} {'max':>6} {'err':>4}"
    head = f"{'endpoint':32} {columns} {'qry':>4} {'cpu':>6} │ {columns} {'cpu':>6}  goal"
    print(f"{'':32} {'1 client (ms)':^37} │ {f'{clients} clients (ms)':^36}")
    print(head)
    missed = 0
    for endpoint, single, many in rows:
        cpu_goal, p95_single, p95_many = GOALS[endpoint.kind]
        met = (
            # CPU comes in clock ticks (10 ms a process): 15.000000000000068 is 15
            (cpu_goal is None or round(max(single["cpu_ms"], many["cpu_ms"]), 1) <= cpu_goal)
            and single["p95"] < p95_single
            and many["p95"] <= p95_many
            and not single["errors"] + many["errors"]
        )
        queries = "-" if single["queries"] is None else str(single["queries"])
        print(
            f"{endpoint.name[:32]:32} {single['p50']:6.0f} {single['p95']:6.0f} {single['max']:6.0f} "
            f"{single['errors']:4} {queries:>4} {single['cpu_ms']:6.1f} │ {many['p50']:6.0f} {many['p95']:6.0f} "
            f"{many['max']:6.0f} {many['errors']:4} {many['cpu_ms']:6.1f}  {'ok' if met else 'MISSED'}"
        )
        missed += not met
    print(
        "cpu: server CPU ms per request (web workers + database backends). Goal: cpu <= 15 (API, files) / 30 (pages),"
    )
    print(f"1-client p95 < 100, {clients}-client p95 <= 400, no errors (decisions: no CPU goal).")
    print(f"{len(rows) - missed} of {len(rows)} endpoints meet every goal.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--suggestions", type=int, default=200_000)
    parser.add_argument("--reuse", action="store_true", help="Keep the seeded database and reuse it next time.")
    parser.add_argument("--requests", type=int, default=20, help="Requests per client and endpoint.")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--only", default="", help="Only endpoints whose name contains this.")
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tagsite.settings")
    os.environ.setdefault("TAGSITE_MEDIA_DIR", str(Path("/tmp") / f"tagsite-bench-pages-{args.images}"))

    import django

    django.setup()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test.utils import setup_databases

    from bench.database import throwaway_database
    from tagsite.services.demo import demo_state, seed_demo

    name = f"bench_pages_{args.images}_{args.suggestions}"
    if args.reuse:
        settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = name
        # kept for the next --reuse; not serialized to a string first (the test runner does that for rollback emulation:
        # minutes and gigabytes at 1M rows)
        setup_databases(verbosity=0, interactive=False, keepdb=True, serialized_aliases=set())
        context = None
    else:
        context = throwaway_database("pages")
        context.__enter__()
    try:
        from django.db import connection

        if demo_state()[1] == 0:
            print(f"seeding {args.images:,} images and {args.suggestions:,} suggestions ...", flush=True)
            seed_demo(args.images, args.suggestions, reset=True, report=lambda line: print(line, flush=True))
        User = get_user_model()
        user, _ = User.objects.get_or_create(username="bench", defaults={"is_staff": True, "is_superuser": True})
        user.set_password(PASSWORD)
        user.save()
        from django.apps import apps

        models = {model.__name__: model for model in apps.get_models()}
        db = connection.settings_dict
        host = urllib.parse.quote(db["HOST"], safe="")
        url = f"postgresql://{db['USER']}@{host}:{db['PORT'] or 5432}/{db['NAME']}"
        port = free_port()
        log = Path(f"/tmp/tagsite-bench-pages-{os.getpid()}.log")
        web = start_web(url, port, log)
        try:
            base = f"http://127.0.0.1:{port}"
            first = login(base, "bench")
            chosen = [e for e in endpoints(first, models) if args.only.lower() in e.name.lower()]
            clients = [first] + [clone(first, base) for _ in range(args.clients - 1)]
            cpu = ServerCPU(web.pid, db["NAME"])
            # this process holds Django, the seeded ids and 16 clients: a full collection of all that mid-request
            # (tens of ms) was a latency of the client's, not the server's
            gc.freeze()
            rows = []
            for endpoint in chosen:
                drive(endpoint, clients, 1, cpu)  # warm up caches and every web thread's database connection
                single = drive(endpoint, [first], args.requests, cpu)
                many = drive(endpoint, clients, max(args.requests // 4, 2), cpu)
                rows.append((endpoint, single.summary(), many.summary()))
                for label, result in (("1 client", single), ("many", many)):
                    if result.first_error:
                        print(f"  {endpoint.name} ({label}): {result.errors} errors, first: {result.first_error}")
            print(f"\n{args.images:,} images, {args.suggestions:,} suggestions, {os.cpu_count()} cores, "
                  f"{os.environ.get('TAGSITE_WEB_WORKERS', '2')} web workers x 4 threads")  # fmt: skip
            print_table(rows, args.clients)
            if args.json:
                figures = [{"endpoint": e.name, "path": e.path, "one": s, "many": m} for e, s, m in rows]
                args.json.write_text(json.dumps(figures, indent=1))
        finally:
            web.terminate()
            web.wait(30)
    finally:
        if context:
            context.__exit__(None, None, None)


if __name__ == "__main__":
    main()
