"""The billing run benchmark's data set: N due monthly subscriptions of one partner.

Each subscription has its own customer account, default card and sandbox card (the
processor's side, copied from one real token), is due on ``RUN_DATE`` and was charged
once the month before (a paid invoice with its line, an approved payment), so the tables
the run writes hold as many rows as it adds, and their statistics say so. Inserted in
bulk (5,000 rows a statement group), with the project's migrations applied first.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import support

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from app.gateway.base import TokenizedMethod

ROOT = Path(__file__).resolve().parent.parent
RUN_DATE = date(2030, 1, 15)
PREVIOUS = date(2029, 12, 15)  # the period every subscription was charged for already
AMOUNT = 2500
BULK = 5000  # rows per insert


def build(url: str, count: int, *, request_limit: int = 0) -> int:
    """Migrate and insert ``count`` due monthly subscriptions; returns the partner id.

    Each was charged once already, the month before (``PREVIOUS``): a paid invoice with
    its line and an approved payment, as a platform with this many subscriptions has.
    With ``request_limit`` the sandbox answers 429 above that many calls a second.
    """
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, insert

    from app.gateway.base import CardDetails
    from app.gateway.sandbox import SandboxGateway
    from app.models import InvoiceSequence, Partner

    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = url
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")
    engine = create_engine(url)
    sandbox = SandboxGateway(engine, latency_ms=0)
    token = sandbox.tokenize_card(CardDetails("4242424242424242", 12, 2035, "123", "Bench"))
    with engine.begin() as conn:
        partner = {
            "name": "Bench", "slug": "bench", "country": "US", "timezone": "UTC",
            "currency": "USD", "locale": "en_US", "tax_rate_bp": 0, "allowed_origins": [],
            "billing_hour": 3, "allow_partial_payments": False, "pay_link_days": 30,
            "created_at": _now(),
        }  # fmt: skip
        partner_id = int(conn.execute(insert(Partner).values(**partner)).inserted_primary_key[0])
        for start in range(0, count, BULK):
            _customers(conn, partner_id, token, start, min(BULK, count - start))
        conn.execute(
            insert(InvoiceSequence).values(
                partner_id=partner_id, series="INV", next_value=count + 1
            )
        )
    if request_limit:
        sandbox.set_request_limit(request_limit)
    engine.dispose()
    return partner_id


def _customers(
    conn: Connection, partner_id: int, token: TokenizedMethod, start: int, size: int
) -> None:
    """``size`` accounts, each with a card, a due subscription and last month's charge."""
    from sqlalchemy import insert

    from app.models import (
        CustomerAccount,
        Invoice,
        InvoiceLine,
        Payment,
        PaymentMethod,
        Subscription,
    )
    from app.models.sandbox import SandboxPaymentMethod
    from app.services.numbering import invoice_number

    now = _now()
    numbers = range(start, start + size)
    accounts = _insert(conn, CustomerAccount, [
        {"partner_id": partner_id, "name": f"Customer {n}", "email": f"c{n}@bench.example",
         "billing_email": "", "phone": "", "status": "active", "currency": "USD",
         "gateway_customer_ref": "", "created_at": now}
        for n in numbers
    ])  # fmt: skip
    methods = _insert(conn, PaymentMethod, [
        {"partner_id": partner_id, "customer_account_id": a, "gateway": "sandbox",
         "token": f"{token.token}_{a}", "kind": "card", "brand": "visa", "last4": "4242",
         "exp_month": 12, "exp_year": 2035, "bank_name": "", "holder_name": "",
         "is_default": True, "created_at": now}
        for a in accounts
    ])  # fmt: skip
    subs = _insert(conn, Subscription, [
        {"partner_id": partner_id, "customer_account_id": a, "payment_method_id": m,
         "description": "Membership", "status": "recurring", "frequency": "monthly",
         "currency": "USD", "manual_amount": AMOUNT, "total_amount": None, "initial_amount": 0,
         "start_date": PREVIOUS, "stop_rule": "unending", "next_charge_date": RUN_DATE,
         "first_period": 0, "recurring_count": 1, "amount_charged": AMOUNT, "last_error": "",
         "created_at": now}
        for a, m in zip(accounts, methods, strict=True)
    ])  # fmt: skip
    # The processor's side: one sandbox card per method, copied from the real token.
    conn.execute(insert(SandboxPaymentMethod), [
        {"token": f"{token.token}_{a}", "kind": "card", "behaviour": "approve",
         "fingerprint": token.fingerprint or "bench", "last4": "4242", "brand": "visa",
         "exp_month": 12, "exp_year": 2035, "bank_name": "", "created_at": now}
        for a in accounts
    ])  # fmt: skip
    invoices = _insert(conn, Invoice, [
        {"partner_id": partner_id, "customer_account_id": a, "subscription_id": s,
         "series": "INV", "sequence": n + 1, "number": invoice_number("INV", partner_id, n + 1),
         "status": "paid", "currency": "USD", "issue_date": PREVIOUS, "due_date": PREVIOUS,
         "subtotal": AMOUNT, "tax": 0, "total": AMOUNT, "amount_paid": AMOUNT,
         "billing_email": "", "created_at": now}
        for n, a, s in zip(numbers, accounts, subs, strict=True)
    ])  # fmt: skip
    conn.execute(insert(InvoiceLine), [
        {"invoice_id": i, "description": f"Membership — {PREVIOUS:%b %-d, %Y}", "quantity": 1,
         "unit_amount": AMOUNT, "tax_rate_bp": 0, "amount": AMOUNT, "tax_amount": 0}
        for i in invoices
    ])  # fmt: skip
    conn.execute(insert(Payment), [
        {"partner_id": partner_id, "customer_account_id": a, "invoice_id": i,
         "subscription_id": s, "payment_method_id": m,
         "purpose_key": f"sub:{s}:{PREVIOUS.isoformat()}:1",
         "idempotency_key": f"portico:sub:{s}:{PREVIOUS.isoformat()}:1", "kind": "charge",
         "method": "card", "status": "approved", "amount": AMOUNT, "currency": "USD",
         "is_recurring": True, "period_date": PREVIOUS, "gateway": "sandbox",
         "gateway_reference": f"ch_sbx_history_{s}", "brand": "visa", "last4": "4242",
         "received_on": PREVIOUS, "refunded_amount": 0, "detail": {"source": "billing_run"},
         "created_at": now}
        for a, m, s, i in zip(accounts, methods, subs, invoices, strict=True)
    ])  # fmt: skip


def _insert(conn: Connection, model: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` of ``model``; their ids, in the rows' order."""
    from sqlalchemy import insert

    returning = insert(model).returning(model.id, sort_by_parameter_order=True)
    return [int(row[0]) for row in conn.execute(returning, rows)]


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

    def settings(self) -> str:
        """The server settings that change a run's cost (autovacuum keeps statistics and
        cached plans current as tables grow)."""
        from sqlalchemy import text

        names = ("server_version", "autovacuum", "synchronous_commit", "shared_buffers", "jit")
        with self.admin.connect() as conn:
            return ", ".join(f"{n} {conn.execute(text(f'SHOW {n}')).scalar()}" for n in names)

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
