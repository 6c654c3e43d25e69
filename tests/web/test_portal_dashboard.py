"""The customer portal's dashboard in the browser (demo data): balance, open invoices with
an inline Pay now (htmx), the upcoming payment schedule, recent payments."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from app.clock import local_today
from app.models import (
    CustomerAccount,
    Invoice,
    Payment,
    ScheduledPayment,
    Subscription,
)
from tests.web.helpers import sign_in

JORDAN = "customer@example.com"
MAKERS = "makers@example.com"
HTMX = {"HX-Request": "true"}


@pytest.fixture
def db(demo: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _account(db: Session, email: str = JORDAN) -> CustomerAccount:
    db.rollback()
    return db.exec(select(CustomerAccount).where(CustomerAccount.email == email)).one()


def _invoices(db: Session, account: CustomerAccount) -> list[Invoice]:
    return list(db.exec(select(Invoice).where(Invoice.customer_account_id == account.id)).all())


def _section(page: str, heading: str) -> str:
    """The HTML of the <section> whose h2 is ``heading``."""
    match = re.search(rf"<section[^>]*>\s*<h2[^>]*>{heading}</h2>(.*?)</section>", page, re.S)
    assert match, f"no section {heading!r}"
    return match.group(1)


def test_does_the_dashboard_show_balance_open_invoices_schedule_and_payments(
    client: FlaskClient, db: Session
) -> None:
    account = _account(db)
    sign_in(client, JORDAN)

    page = client.get("/portal/").get_data(as_text=True)

    assert "<h1>Jordan Rivera</h1>" in page and "Billed by Harbor Community Network" in page
    assert "<dt>Balance due</dt><dd>$130.00</dd>" in page
    open_part = _section(page, "Open invoices")
    invoices = _invoices(db, account)
    for invoice in invoices:
        if invoice.status in ("created", "overdue"):
            pay = f"/portal/invoices/{invoice.id}/pay"
            assert f'href="{pay}" hx-get="{pay}" hx-target="#pay-panel"' in open_part
            assert f'href="/portal/invoices/{invoice.id}">{invoice.number}</a>' in open_part
        else:
            assert invoice.number not in open_part
    assert 'id="pay-panel"' in page
    upcoming = _section(page, "Upcoming payments")
    for description, amount in (
        ("Community membership", "$25.00"),
        ("Annual supporter plan", "$120.00"),
        ("Studio equipment installments", "$150.00"),
    ):
        row = re.search(rf"<tr>(?:(?!</tr>).)*{description}(?:(?!</tr>).)*</tr>", upcoming, re.S)
        assert row, description
        assert amount in row.group(0) and "Visa •••• 4242" in row.group(0)
    recent = _section(page, "Recent payments")
    payments = db.exec(
        select(Payment)
        .where(Payment.customer_account_id == account.id)
        .order_by(Payment.created_at.desc(), Payment.id.desc())  # type: ignore[attr-defined]
    ).all()
    assert payments
    for payment in payments[:5]:
        assert f'href="/portal/payments/{payment.id}"' in recent
    for control in ("Cancel invoice", "Record payment", ">Refund<", "Resend"):
        assert control not in page


def test_are_upcoming_payments_in_date_order_with_a_scheduled_invoice_payment(
    client: FlaskClient, db: Session
) -> None:
    account = _account(db)
    invoice = next(i for i in _invoices(db, account) if i.status == "created")
    subs = db.exec(select(Subscription).where(Subscription.customer_account_id == account.id)).all()
    first = min(s.next_charge_date for s in subs if s.next_charge_date)
    day = local_today("America/New_York") + timedelta(days=1)
    db.add(
        ScheduledPayment(
            partner_id=account.partner_id, customer_account_id=account.id,  # type: ignore[arg-type]
            invoice_id=invoice.id, amount=1234, currency="USD", pay_on=day,  # type: ignore[arg-type]
            status="scheduled",
        )
    )  # fmt: skip
    db.commit()
    sign_in(client, JORDAN)

    upcoming = _section(client.get("/portal/").get_data(as_text=True), "Upcoming payments")

    dates = [_as_day(d) for d in re.findall(r"<tr>\s*<td>(\w{3} \d{1,2}, \d{4})</td>", upcoming)]
    assert len(dates) == 4  # three subscriptions and the scheduled payment
    assert dates == sorted(dates) and day in dates and first in dates
    assert f"Invoice {invoice.number}</a>" in upcoming and "$12.34" in upcoming


def _as_day(text: str) -> date:
    return datetime.strptime(text, "%b %d, %Y").date()


def test_does_pay_now_load_the_panel_alone_for_htmx(client: FlaskClient, db: Session) -> None:
    invoice = next(i for i in _invoices(db, _account(db)) if i.status == "overdue")
    sign_in(client, JORDAN)

    block = client.get(f"/portal/invoices/{invoice.id}/pay", headers=HTMX)
    full = client.get(f"/portal/invoices/{invoice.id}/pay")

    body = block.get_data(as_text=True)
    assert block.status_code == 200 and "HX-Request" in block.headers["Vary"]
    assert "<html" not in body and "<nav" not in body
    assert invoice.number in body and 'name="csrf_token"' in body and "Pay $90.00" in body
    assert "<html" in full.get_data(as_text=True)


def test_does_a_subscription_in_error_link_to_its_payment_method(
    client: FlaskClient, db: Session
) -> None:
    account = _account(db)
    sub = db.exec(
        select(Subscription).where(Subscription.customer_account_id == account.id)
    ).first()
    assert sub is not None
    sub.status, sub.last_error = "error", "Your card was declined."
    db.add(sub)
    db.commit()
    sign_in(client, JORDAN)

    page = client.get("/portal/").get_data(as_text=True)

    assert f"Your payment for {sub.description} failed" in page
    assert f'href="/portal/subscriptions/{sub.id}/payment-method"' in page
    assert sub.description not in _section(page, "Upcoming payments")


def test_does_another_customer_see_only_their_own_dashboard(
    client: FlaskClient, db: Session
) -> None:
    jordan = _invoices(db, _account(db))
    sign_in(client, MAKERS)

    page = client.get("/portal/").get_data(as_text=True)

    assert "Maple Street Makers" in page and "Open workshop pass" in page
    assert "Jordan Rivera" not in page
    for invoice in jordan:
        assert invoice.number not in page
