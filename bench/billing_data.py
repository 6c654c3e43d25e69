"""The billing run benchmark's data set: N due monthly subscriptions of one partner.

Each subscription has its own customer account, default card and sandbox card (the
processor's side, copied from one real token), all due on ``RUN_DATE``. Inserted in bulk
(5,000 rows a statement group), with the project's migrations applied first.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from bench import support

ROOT = Path(__file__).resolve().parent.parent
RUN_DATE = date(2030, 1, 15)


def build(url: str, count: int, *, request_limit: int = 0) -> int:
    """Migrate and insert ``count`` due monthly subscriptions; returns the partner id."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, insert

    from app.gateway.base import CardDetails
    from app.gateway.sandbox import SandboxGateway
    from app.models import CustomerAccount, Partner, PaymentMethod, Subscription
    from app.models.sandbox import SandboxPaymentMethod

    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = url
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")
    engine = create_engine(url)
    sandbox = SandboxGateway(engine, latency_ms=0)
    token = sandbox.tokenize_card(CardDetails("4242424242424242", 12, 2035, "123", "Bench"))
    with engine.begin() as conn:
        partner_id = conn.execute(
            insert(Partner).values(
                name="Bench",
                slug="bench",
                country="US",
                timezone="UTC",
                currency="USD",
                locale="en_US",
                tax_rate_bp=0,
                allowed_origins=[],
                billing_hour=3,
                allow_partial_payments=False,
                pay_link_days=30,
                created_at=_now(),
            )
        ).inserted_primary_key[0]
        for start in range(0, count, 5000):
            size = min(5000, count - start)
            accounts = [
                {
                    "partner_id": partner_id,
                    "name": f"Customer {start + i}",
                    "email": f"c{start + i}@bench.example",
                    "billing_email": "",
                    "phone": "",
                    "status": "active",
                    "currency": "USD",
                    "gateway_customer_ref": "",
                    "created_at": _now(),
                }
                for i in range(size)
            ]
            ids = [
                r[0]
                for r in conn.execute(
                    insert(CustomerAccount).returning(CustomerAccount.id), accounts
                )
            ]
            methods = [
                {
                    "partner_id": partner_id,
                    "customer_account_id": a,
                    "gateway": "sandbox",
                    "token": f"{token.token}_{a}",
                    "kind": "card",
                    "brand": "visa",
                    "last4": "4242",
                    "exp_month": 12,
                    "exp_year": 2035,
                    "bank_name": "",
                    "holder_name": "",
                    "is_default": True,
                    "created_at": _now(),
                }
                for a in ids
            ]
            method_ids = [
                r[0]
                for r in conn.execute(insert(PaymentMethod).returning(PaymentMethod.id), methods)
            ]
            subs = [
                {
                    "partner_id": partner_id,
                    "customer_account_id": a,
                    "payment_method_id": m,
                    "description": "Membership",
                    "status": "recurring",
                    "frequency": "monthly",
                    "currency": "USD",
                    "manual_amount": 2500,
                    "total_amount": None,
                    "initial_amount": 0,
                    "start_date": RUN_DATE,
                    "stop_rule": "unending",
                    "next_charge_date": RUN_DATE,
                    "first_period": 0,
                    "recurring_count": 0,
                    "amount_charged": 0,
                    "last_error": "",
                    "created_at": _now(),
                }
                for a, m in zip(ids, method_ids, strict=True)
            ]
            conn.execute(insert(Subscription), subs)
            # The processor's side: one sandbox card per method, copied from the real token.
            conn.execute(
                insert(SandboxPaymentMethod),
                [
                    {
                        "token": f"{token.token}_{a}",
                        "kind": "card",
                        "behaviour": "approve",
                        "fingerprint": token.fingerprint or "bench",
                        "last4": "4242",
                        "brand": "visa",
                        "exp_month": 12,
                        "exp_year": 2035,
                        "bank_name": "",
                        "created_at": _now(),
                    }
                    for a in ids
                ],
            )
    if request_limit:
        sandbox.set_request_limit(request_limit)
    engine.dispose()
    return int(partner_id)


def _now() -> datetime:
    from app.clock import utcnow

    return utcnow()


class Databases:
    """A template database built once, and throwaway copies of it."""

    def __init__(self, postgres: bool) -> None:
        self.postgres = postgres
        self.folder = Path(tempfile.mkdtemp(prefix="billing-bench-"))
        self.made: list[str] = []
        if postgres:
            from sqlalchemy import create_engine

            self.admin = create_engine(
                f"{support.PG_SERVER}/postgres", isolation_level="AUTOCOMMIT"
            )

    def url(self, name: str) -> str:
        if self.postgres:
            return f"{support.PG_SERVER}/{name}"
        return f"sqlite:///{self.folder / (name + '.db')}"

    def new_name(self, tag: str) -> str:
        return f"billing_bench_{secrets.token_hex(3)}_{tag}"

    def create(self, tag: str, template: str | None = None) -> str:
        """A new database (empty, or a copy of ``template``); returns its name."""
        name = self.new_name(tag)
        if self.postgres:
            self._admin(
                f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
            )
        elif template:
            source = self.folder / f"{template}.db"
            shutil.copyfile(source, self.folder / f"{name}.db")
        self.made.append(name)
        return name

    def drop(self, name: str) -> None:
        if self.postgres:
            self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            for suffix in (".db", ".db-wal", ".db-shm"):
                (self.folder / f"{name}{suffix}").unlink(missing_ok=True)
        self.made.remove(name)

    def vacuum(self, name: str) -> None:
        """Ready the template for copying: on PostgreSQL vacuumed and analyzed, as
        autovacuum would have done by run time; on SQLite everything in the main file
        (a copy of the file alone then holds every row)."""
        from sqlalchemy import create_engine, text

        engine = create_engine(self.url(name), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            if self.postgres:
                conn.execute(text("VACUUM ANALYZE"))
            else:
                conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
        engine.dispose()

    def close(self) -> None:
        for name in list(self.made):
            self.drop(name)
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.postgres:
            self.admin.dispose()

    def _admin(self, sql: str) -> None:
        from sqlalchemy import text

        with self.admin.connect() as conn:
            conn.execute(text(sql))


@dataclass(frozen=True)
class Template:
    """A built data set: its database, size and partner."""

    name: str
    subscriptions: int
    partner_id: int


def make_template(dbs: Databases, tag: str, count: int, request_limit: int) -> Template:
    """Build a data set of ``count`` subscriptions into a new template database."""
    name = dbs.create(tag)
    partner_id = build(dbs.url(name), count, request_limit=request_limit)
    dbs.vacuum(name)
    return Template(name, count, partner_id)
