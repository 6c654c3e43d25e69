"""Render latency of the take-payment widget under load, against gunicorn with 2 workers.

    .venv/bin/python bench/widget_latency.py [--requests 2000] [--concurrency 20] [--rounds 3]
    .venv/bin/python bench/widget_latency.py --base-url http://127.0.0.1:8000

Without --base-url it builds a throw-away SQLite database (migrated, demo data seeded),
starts ``gunicorn -w 2 'app:create_app()'`` on a free port (PORTICO_ENV=test; Redis is
never touched by this page), and after a short warm-up fires rounds of requests at
``GET /embed/take-payment/harbor-support`` over 20 concurrent connections (one thread,
non-blocking sockets; ``Accept-Encoding: gzip`` like a browser). It prints each round's
throughput, latency percentiles, gunicorn's CPU time per request and the load average
(other processes on the machine skew a round), then the median round against the budget
(p99 <= 50 ms), and stops gunicorn. This prints figures; it is not a pass/fail test.

``widget_weight.py`` reuses :func:`portico_server` from this module.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WIDGET_PATH = "/embed/take-payment/harbor-support"
BUDGET_P99_MS = 50.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_for(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not _answers(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{url} did not come up:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@dataclass(frozen=True)
class Server:
    base_url: str
    pid: int  # the gunicorn master; its workers are its children


def cpu_seconds(pid: int) -> float:
    """CPU time used so far by process ``pid`` and its children (Linux /proc)."""
    total = 0.0
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    for each in [str(pid), *children]:
        try:
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


@contextlib.contextmanager
def portico_server(workers: int = 2, *, allowed_origins: tuple[str, ...] = ()) -> Iterator[Server]:
    """gunicorn serving Portico on a fresh SQLite database with the demo data.

    ``allowed_origins`` are added to the US demo partner's allowed origins. The temporary
    directory (database, log) is removed afterwards.
    """
    workdir = Path(tempfile.mkdtemp(prefix="portico-bench-"))
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PORTICO_", "FLASK_", "STRIPE_"))
        and k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "SANDBOX_LATENCY_MS")
    }
    database_url = f"sqlite:///{workdir / 'bench.db'}"
    env.update(
        PORTICO_ENV="test",
        SECRET_KEY=secrets.token_urlsafe(48),
        DATABASE_URL=database_url,
        PAYMENT_GATEWAY="sandbox",
        PORTICO_BASE_URL=base_url,
        FLASK_APP="app:create_app",
    )
    try:
        for step in (["alembic", "upgrade", "head"], ["flask", "seed-demo"]):
            subprocess.run(
                [str(BIN / step[0]), *step[1:]], cwd=REPO_ROOT, env=env, check=True,
                capture_output=True, timeout=120,
            )  # fmt: skip
        if allowed_origins:
            _allow_origins(database_url, allowed_origins)
        log = workdir / "gunicorn.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                [str(BIN / "gunicorn"), "-w", str(workers), "-b", f"127.0.0.1:{port}"]
                + ["app:create_app()"],
                cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            wait_for(base_url + WIDGET_PATH, proc, log)
            yield Server(base_url, proc.pid)
        finally:
            stop(proc)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _allow_origins(database_url: str, origins: tuple[str, ...]) -> None:
    sys.path.insert(0, str(REPO_ROOT))
    from sqlmodel import Session, create_engine, select

    from app.models import Partner

    engine = create_engine(database_url)
    with Session(engine) as session:
        partner = session.exec(select(Partner).where(Partner.slug == "us-partner")).one()
        partner.allowed_origins = [*partner.allowed_origins, *origins]
        session.add(partner)
        session.commit()
    engine.dispose()


# --- load -------------------------------------------------------------------------------


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


class _Connection:
    """One client connection: its socket and the request in flight on it."""

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.started = 0.0
        self.received = b""
        self.expected = -1  # bytes of head + body, once the head has arrived
        self.closing = False


def fire(base_url: str, path: str, total: int, concurrency: int) -> tuple[list[float], float]:
    """``total`` GETs over ``concurrency`` connections; latencies in ms and wall time in s.

    One thread drives all connections with non-blocking sockets, so the load generator
    costs ~0.15 ms of CPU per request (a thread per connection, or asyncio streams, cost
    two to three times that on the same two cores, and threads waiting for the GIL would
    inflate the latencies they measure). A connection is reused while the server keeps it
    open; gunicorn's sync workers close it after every answer, so the client reconnects,
    as a browser would. A request's latency runs from its connect (or send) to its last
    byte.
    """
    parts = urlsplit(base_url)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: text/html\r\n"
        "Accept-Encoding: gzip\r\nUser-Agent: portico-bench\r\n\r\n"
    ).encode()
    selector = selectors.DefaultSelector()
    latencies: list[float] = []
    failures: list[str] = []
    started = 0

    def start(conn: _Connection) -> None:
        nonlocal started
        started += 1
        conn.started = time.perf_counter()
        conn.received, conn.expected = b"", -1
        if conn.sock is not None:  # kept alive
            conn.sock.send(request)
            return
        conn.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        conn.sock.setblocking(False)
        conn.sock.connect_ex(address)
        selector.register(conn.sock, selectors.EVENT_WRITE, conn)

    def finish(conn: _Connection) -> None:
        assert conn.sock is not None
        latencies.append((time.perf_counter() - conn.started) * 1000)
        if conn.closing or started >= total:
            selector.unregister(conn.sock)
            conn.sock.close()
            conn.sock = None
        if started < total:
            start(conn)

    began = time.perf_counter()
    for _ in range(min(concurrency, total)):
        start(_Connection())
    while len(latencies) < total:
        for key, events in selector.select(timeout=30):
            conn: _Connection = key.data
            assert conn.sock is not None
            if events & selectors.EVENT_WRITE:  # connected (or failed to)
                if error := conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    raise SystemExit(f"cannot connect to {base_url}: {os.strerror(error)}")
                conn.sock.send(request)
                selector.modify(conn.sock, selectors.EVENT_READ, conn)
                continue
            chunk = conn.sock.recv(65536)
            conn.received += chunk
            if conn.expected < 0 and (end := conn.received.find(b"\r\n\r\n")) >= 0:
                head = conn.received[:end].decode("latin-1").lower().split("\r\n")
                fields = dict(line.split(":", 1) for line in head[1:] if ":" in line)
                if head[0].split()[1] != "200":
                    failures.append(head[0])
                conn.expected = end + 4 + int(fields.get("content-length", "0"))
                conn.closing = fields.get("connection", "").strip() == "close"
            if 0 <= conn.expected <= len(conn.received):
                finish(conn)
            elif not chunk:
                raise SystemExit(f"{base_url} closed a connection before answering")
    elapsed = time.perf_counter() - began
    selector.close()
    if failures:
        raise SystemExit(f"{len(failures)} failed requests, e.g. {failures[:3]}")
    return latencies, elapsed


def summarize(latencies: list[float], elapsed: float) -> dict[str, float]:
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "p99": percentile(latencies, 99),
        "max": max(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per round")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--base-url", help="a running Portico instead of a fresh gunicorn")
    args = parser.parse_args()

    with contextlib.ExitStack() as stack:
        server = None
        if args.base_url:
            base_url = args.base_url.rstrip("/")
            print(f"target: {base_url}{WIDGET_PATH}")
        else:
            server = stack.enter_context(portico_server(args.workers))
            base_url = server.base_url
            print(f"target: gunicorn -w {args.workers}, SQLite, {base_url}{WIDGET_PATH}")
        print(
            f"{args.rounds} rounds of {args.requests} GETs at concurrency {args.concurrency}; "
            f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)"
        )
        fire(base_url, WIDGET_PATH, args.warmup, args.concurrency)  # imports, first renders
        print(f"{'round':>5}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}"
              f"{'server CPU/req':>16}{'load':>6}")  # fmt: skip
        rounds = []
        for n in range(1, args.rounds + 1):
            cpu_before = cpu_seconds(server.pid) if server else 0.0
            latencies, elapsed = fire(base_url, WIDGET_PATH, args.requests, args.concurrency)
            cpu = (cpu_seconds(server.pid) - cpu_before) / len(latencies) * 1000 if server else 0
            result = summarize(latencies, elapsed)
            rounds.append(result)
            print(
                f"{n:>5}{result['rps']:>8.0f}{result['p50']:>9.1f}{result['p95']:>9.1f}"
                f"{result['p99']:>9.1f}{result['max']:>9.1f}"
                f"{f'{cpu:.2f} ms' if server else '-':>16}{os.getloadavg()[0]:>6.2f}"
            )
    median = sorted(rounds, key=lambda r: r["p99"])[len(rounds) // 2]
    verdict = "within" if median["p99"] <= BUDGET_P99_MS else "OVER"
    print(
        f"median round: {median['rps']:.0f} req/s, p50 {median['p50']:.1f} ms, "
        f"p95 {median['p95']:.1f} ms, p99 {median['p99']:.1f} ms -> {verdict} the budget "
        f"(p99 <= {BUDGET_P99_MS:.0f} ms)"
    )


if __name__ == "__main__":
    main()
