"""Each partner page (customer list, account page, invoice page, dashboard) and the customer
portal's dashboard sends the same number of SQL statements whatever the number of rows it
shows or sums: the page is requested with N rows of every kind behind it, then with four
times as many, and the counts must be equal. A query per row (a lazy load in a template, a
lookup in a loop) makes the second count larger and fails the test."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, event
from sqlmodel import Session

from app.clock import local_today
from app.models import (
    AuditEvent,
    CustomerAccount,
    DunningNotice,
    Invoice,
    InvoiceLine,
    Partner,
    PaymentMethod,
    Role,
    ScheduledPayment,
    User,
)
from app.services.auth import hash_password
from tests.services.dashboard_helpers import (
    make_account,
    make_invoice,
    make_partner,
    make_payment,
    make_subscription,
)
from tests.web.helpers import DEMO_PASSWORD, sign_in

N = 3  # rows of each kind in the first measurement; the second has SCALE times as many
SCALE = 4
STATUSES = ("paid", "created", "overdue", "canceled")


@dataclass
class World:
    partner: Partner
    admin: User
    account: CustomerAccount  # the customer whose pages are requested
    customer: User  # that customer's portal user
    invoice: Invoice  # the invoice whose page is requested
    today: date
    added: int = 0  # rows of each kind so far


@pytest.fixture
def db(app: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def world(db: Session) -> World:
    partner, admin = make_partner(db, "counted")
    account = make_account(db, partner, "Aaron Counted")
    customer = User(
        email="customer@counted.example",
        password_hash=hash_password(DEMO_PASSWORD),
        role=Role.CUSTOMER,
        partner_id=partner.id,
        customer_account_id=account.id,
    )
    admin.password_hash = customer.password_hash
    db.add_all([admin, customer])
    db.commit()
    today = local_today(partner.timezone)
    invoice = make_invoice(
        db, account, status="overdue", total=100_000, due=today - timedelta(days=40)
    )
    return World(partner, admin, account, customer, invoice, today)


def _grow(db: Session, w: World, n: int) -> None:
    """Add ``n`` rows of every kind the five pages read."""
    today, account = w.today, w.account
    for k in range(w.added, w.added + n):
        # Other customers (the list's rows, each with its own balance and next charge).
        other = make_account(db, w.partner, f"Customer {k:03d}")
        make_invoice(db, other, status="overdue", total=1000 + k, due=today - timedelta(days=9))
        make_subscription(db, other, frequency="monthly", start=today + timedelta(3), amount=900)
        # The account's own invoices, subscriptions, cards, payments and history.
        status = STATUSES[k % len(STATUSES)]
        due = today - timedelta(days=10 + 25 * (k % 5)) if status != "created" else today
        paid = 2000 if status == "paid" else 0
        inv = make_invoice(db, account, status=status, total=2000, paid=paid, due=due)
        db.add(InvoiceLine(invoice_id=inv.id, description=f"Line {k}", unit_amount=2000,  # type: ignore[arg-type]
                           amount=2000))  # fmt: skip
        frequency = ("weekly", "monthly", "daily")[k % 3]
        sub = make_subscription(db, account, frequency=frequency, start=today, amount=500 + k)
        card = PaymentMethod(partner_id=w.partner.id, customer_account_id=account.id,  # type: ignore[arg-type]
                             gateway="sandbox", token=f"tok_counted_{k}", kind="card",
                             brand="visa", last4=f"{k:04d}", exp_month=1 + k % 12,
                             exp_year=today.year + k % 3, is_default=k == 0)  # fmt: skip
        db.add(card)
        db.add_all([
            AuditEvent(partner_id=w.partner.id, customer_account_id=account.id,
                       actor_user_id=w.admin.id, action="invoice.issued", subject_type="invoice",
                       subject_id=inv.id, detail={"number": inv.number}),
            AuditEvent(partner_id=w.partner.id, actor_label="billing run",
                       action="subscription.updated", subject_type="subscription",
                       subject_id=sub.id, detail={}),
        ])  # fmt: skip
        db.commit()
        when = datetime.now(UTC) - timedelta(days=30 * (k % 6))
        make_payment(db, account, kind="charge", amount=1000 + k, invoice=inv, settled_at=when,
                     received_on=when.date())  # fmt: skip
        make_payment(db, account, kind="refund", amount=10, settled_at=when)
        make_payment(db, account, kind="charge", amount=77, status="declined", settled_at=when)
        # The requested invoice: more lines, payments, dunning stages; a scheduled payment.
        db.add_all([
            InvoiceLine(invoice_id=w.invoice.id, description=f"Extra {k}", unit_amount=100,  # type: ignore[arg-type]
                        amount=100),
            DunningNotice(partner_id=w.partner.id, invoice_id=w.invoice.id,  # type: ignore[arg-type]
                          customer_account_id=account.id, day=5 * (k + 1), stage="reminder",  # type: ignore[arg-type]
                          due_on=today, handled_on=today, recipients="customer:a@b.example"),
            ScheduledPayment(partner_id=w.partner.id, customer_account_id=account.id,  # type: ignore[arg-type]
                             invoice_id=inv.id, amount=100, currency="USD",  # type: ignore[arg-type]
                             pay_on=today + timedelta(days=k + 1)),
        ])  # fmt: skip
        db.commit()
        make_payment(db, account, kind="check", amount=50, invoice=w.invoice,
                     received_on=today, method="manual", reference=f"#{k}")  # fmt: skip
    w.added += n


def _partner_pages(w: World) -> dict[str, str]:
    return {
        "customer list": "/partner/",
        "account page": f"/partner/customers/{w.account.id}",
        "invoice page": f"/partner/invoices/{w.invoice.id}",
        "dashboard": "/partner/dashboard",
    }


# What grows on each page with the rows (a check that the added rows reach the page).
ROWS: dict[str, Callable[[str], int]] = {
    "customer list": lambda html: len(re.findall(r'href="/partner/customers/\d+"', html)),
    "account page": lambda html: len(
        re.findall(r'href="/partner/(?:invoices|payments)/\d+"', html)
    ),
    "invoice page": lambda html: html.count("Check"),
    "dashboard": lambda html: 0,  # sums only: the figures change, not the number of rows
    "portal": lambda html: len(re.findall(r"/portal/invoices/\d+", html)),
}


def _count(engine: Engine, client: FlaskClient, path: str) -> tuple[int, str]:
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # noqa: ANN001
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        response = client.get(path)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert response.status_code == 200, (path, response.status_code)
    return len(seen), response.get_data(as_text=True)


@pytest.mark.parametrize("page", ["customer list", "account page", "invoice page", "dashboard"])
def test_does_a_partner_page_send_as_many_statements_for_4x_the_rows(
    db: Session, engine: Engine, client: FlaskClient, world: World, page: str
) -> None:
    assert sign_in(client, world.admin.email).status_code in (302, 303)
    path = _partner_pages(world)[page]
    _grow(db, world, N)
    few, html = _count(engine, client, path)
    _grow(db, world, (SCALE - 1) * N)
    many, bigger = _count(engine, client, path)

    assert ROWS[page](bigger) >= ROWS[page](html)
    if page != "dashboard":
        assert ROWS[page](bigger) > ROWS[page](html), "the added rows must reach the page"
    assert few == many, f"{page}: {few} statements with {N} rows, {many} with {SCALE * N}"


def test_does_the_portal_dashboard_send_as_many_statements_for_4x_the_rows(
    db: Session, engine: Engine, client: FlaskClient, world: World
) -> None:
    assert sign_in(client, world.customer.email).status_code in (302, 303)
    _grow(db, world, N)
    few, html = _count(engine, client, "/portal/")
    _grow(db, world, (SCALE - 1) * N)
    many, bigger = _count(engine, client, "/portal/")

    assert ROWS["portal"](bigger) > ROWS["portal"](html), "the added rows must reach the page"
    assert few == many, f"portal: {few} statements with {N} rows, {many} with {SCALE * N}"
