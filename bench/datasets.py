"""Large data sets for benchmarks, written in bulk (COPY on PostgreSQL, executemany on SQLite).

``build_partner_set(url, Sizes(...))`` migrates an empty database with Alembic and writes
one partner (America/New_York, USD, 7.25 % tax) with a partner admin who can sign in
(``ADMIN_EMAIL`` / ``ADMIN_PASSWORD``, a real password hash), then its customers, cards
and bank accounts, subscriptions, invoices with their lines and dunning notices,
cancellation invoices, payments (card and manual, declines, installments, refunds,
widget donations) and history events, and runs VACUUM ANALYZE (ANALYZE on SQLite).
``FULL`` is the issue's scale (10,000 customers, 100,000 invoices, 300,000 payments);
``SMALL`` is for quick tries.

Rows respect the schema's rules: unique purpose keys and card tokens, gapless invoice
numbers per series (the sequences' next values stored), cancellation invoices in the CN
series pointing at the invoice they cancel, amounts paid matching approved payments,
subscriptions' next charge dates derived by the schedule rules. Invoices are spread over
two years before ``today``; customers are skewed (a few large accounts hold most rows), as
real partners are. Ids are assigned here (PostgreSQL sequences are moved past them), so no
row is read back. The same seed and ``today`` give the same rows.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from bench.dataset_rows import ADMIN_EMAIL, TIMEZONE, Generator

ROOT = Path(__file__).resolve().parent.parent
ADMIN_PASSWORD = "bench-password"


@dataclass(frozen=True)
class Sizes:
    customers: int = 10_000
    invoices: int = 100_000  # all series: cancellation invoices included
    payments: int = 300_000
    subscriptions: int = 3_000
    seed: int = 9


FULL = Sizes()
SMALL = Sizes(customers=300, invoices=3_000, payments=9_000, subscriptions=90)


@dataclass
class PartnerSet:
    """What was built: ids the benchmark needs, row counts, and how long it took."""

    partner_id: int
    admin_email: str
    password: str
    today: date
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def migrate(url: str) -> None:
    """Bring the database at ``url`` to the head revision."""
    from alembic import command
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = url
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")


def build_partner_set(url: str, sizes: Sizes = FULL, *, today: date | None = None) -> PartnerSet:
    """Migrate the empty database at ``url`` and write one partner's rows of ``sizes``.

    ``today`` (default: the partner's local today) is the day the data ends on: invoices
    due after it are still open, overdue ones have their reminders up to it. Raises
    whatever the database raises (e.g. a database that is not empty).
    """
    from sqlalchemy import create_engine, text

    from app.services.auth import hash_password

    started = time.perf_counter()
    migrate(url)
    today = today or datetime.now(ZoneInfo(TIMEZONE)).date()
    engine = create_engine(url)
    writer = _Writer(engine)
    gen = Generator(sizes, today)
    writer.write("partner", gen.partner())
    writer.write("user", gen.users(hash_password(ADMIN_PASSWORD)))
    writer.write("customeraccount", gen.customers())
    writer.write("paymentmethod", gen.methods())
    writer.write("subscription", gen.subscriptions())
    writer.write("invoice", gen.invoices())
    writer.write("invoiceline", gen.lines())
    writer.write("invoicesequence", gen.sequences())
    writer.write("dunningnotice", gen.notices())
    writer.write("payment", gen.payments())
    writer.write("auditevent", gen.events())
    writer.finish()
    with engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        # A live database is vacuumed by autovacuum; a fresh bulk load is not yet, and
        # without the visibility map PostgreSQL cannot answer from an index alone.
        conn.execute(text("VACUUM ANALYZE" if writer.postgres else "ANALYZE"))
    engine.dispose()
    return PartnerSet(
        partner_id=1,
        admin_email=ADMIN_EMAIL,
        password=ADMIN_PASSWORD,
        today=today,
        counts=writer.counts,
        seconds=time.perf_counter() - started,
    )


# -- writing ----------------------------------------------------------------------------------


class _Writer:
    """Writes (columns, rows) to a table: COPY on PostgreSQL, executemany on SQLite."""

    def __init__(self, engine) -> None:  # noqa: ANN001
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        self.raw = engine.raw_connection()
        self.counts: dict[str, int] = {}
        if not self.postgres:  # a throw-away set: no need to wait for the disk
            cursor = self.raw.cursor()
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = OFF")
            cursor.close()

    def write(self, table: str, data: tuple[tuple[str, ...], Iterable[tuple]]) -> None:
        columns, rows = data
        names = ", ".join(f'"{c}"' for c in columns)
        cursor = self.raw.cursor()
        n = 0
        if self.postgres:
            with cursor.copy(f'COPY "{table}" ({names}) FROM STDIN') as copy:
                for row in rows:
                    copy.write_row(row)
                    n += 1
        else:
            marks = ", ".join("?" for _ in columns)
            statement = f'INSERT INTO "{table}" ({names}) VALUES ({marks})'
            batch: list[tuple] = []
            for row in rows:
                batch.append(_sqlite_row(row))
                if len(batch) == 5000:
                    cursor.executemany(statement, batch)
                    n += len(batch)
                    batch.clear()
            cursor.executemany(statement, batch)
            n += len(batch)
        cursor.close()
        self.raw.commit()
        self.counts[table] = n

    def finish(self) -> None:
        """Move PostgreSQL's id sequences past the ids written here; close."""
        if self.postgres:
            cursor = self.raw.cursor()
            for table in self.counts:
                if table != "invoicesequence":
                    cursor.execute(
                        f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
                        f'(SELECT coalesce(max(id), 0) + 1 FROM "{table}"), false)'
                    )
            cursor.close()
            self.raw.commit()
        self.raw.close()


def _sqlite_row(row: tuple) -> tuple:
    return tuple(_sqlite_value(v) for v in row)


def _sqlite_value(value: object) -> object:
    if isinstance(value, datetime):  # as SQLAlchemy stores UTC instants on SQLite
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    return value
