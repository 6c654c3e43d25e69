"""The dunning sweep benchmark's data set: one partner, its accounts and N invoices, of
which a given number are due their day-5 reminder on RUN_DATE, bulk-inserted."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

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


def build(url: str, total: int, due: int) -> int:
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
