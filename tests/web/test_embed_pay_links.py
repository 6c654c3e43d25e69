"""Pay links over HTTP: /pay/<token> and its embeddable /embed/pay-now/<token>."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlmodel import Session, select
from werkzeug.test import TestResponse

from app.clock import utcnow
from app.models import Invoice, InvoiceLine, InvoiceStatus, OutboxMessage, Partner
from app.services import pay_links
from tests.web.helpers import csrf_token

BILLING = "accounts@rivera-family.example"
DEMO_ORIGINS = ["http://localhost:5001", "http://127.0.0.1:5001"]
_TOKEN = re.compile(r'name="token" value="([^"]+)"')


@pytest.fixture
def db(demo: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def invoice(db: Session) -> Invoice:
    """The demo's open $40.00 workshop invoice, billed to its own address."""
    found = db.exec(
        select(Invoice)
        .join(InvoiceLine, InvoiceLine.invoice_id == Invoice.id)
        .where(InvoiceLine.description == "Workshop series fee")
    ).one()
    found.billing_email = BILLING
    db.add(found)
    db.commit()
    assert found.status == InvoiceStatus.CREATED and found.total == 4000
    return found


def link_path(app: Flask, db: Session, invoice: Invoice, *, days_ago: int = 0) -> str:
    """A fresh pay link's token (issued ``days_ago``; the demo partner's links last 30 days)."""
    partner = db.get(Partner, invoice.partner_id)
    assert partner is not None
    now = utcnow() - timedelta(days=days_ago)
    link = pay_links.issue_link(db, invoice=invoice, partner=partner, now=now, user_id=None)
    return pay_links.token_for(app.config["PORTICO"].secret_key, link)


def frame_ancestors(response: TestResponse) -> list[str]:
    policy = response.headers["Content-Security-Policy"]
    directive = next(d.strip() for d in policy.split(";") if "frame-ancestors" in d)
    return directive.split()[1:]


def card(token: str, csrf: str = "", number: str = "4242 4242 4242 4242") -> dict[str, str]:
    return {
        "token": token, "csrf_token": csrf, "name": "Jordan Rivera", "method": "card",
        "card_number": number, "exp": f"12/{(utcnow().year + 3) % 100:02d}", "cvc": "123",
    }  # fmt: skip


def form_token(response: TestResponse) -> str:
    match = _TOKEN.search(response.get_data(as_text=True))
    assert match, "no form token in the page"
    return match.group(1)


@pytest.mark.parametrize("prefix", ["/pay/", "/embed/pay-now/"])
def test_does_a_pay_link_show_the_invoice(
    client: FlaskClient, demo: Flask, db: Session, invoice: Invoice, prefix: str
) -> None:
    response = client.get(prefix + link_path(demo, db, invoice))

    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert f"Invoice {invoice.number}" in html
    assert invoice.due_date.strftime("%b %-d, %Y") in html
    assert re.search(r"<dt>Amount due</dt><dd>\$40\.00</dd>", html)
    assert re.search(r'<button type="submit" class="primary">Pay \$40\.00</button>', html)


def test_may_only_the_partner_frame_the_pay_now_embed(
    client: FlaskClient, demo: Flask, db: Session, invoice: Invoice
) -> None:
    token = link_path(demo, db, invoice)

    embedded = client.get(f"/embed/pay-now/{token}")
    first_party = client.get(f"/pay/{token}")

    assert frame_ancestors(embedded) == DEMO_ORIGINS
    assert "X-Frame-Options" not in embedded.headers
    assert "Set-Cookie" not in embedded.headers
    assert frame_ancestors(first_party) == ["'none'"]


def test_does_a_tampered_pay_link_answer_404(
    client: FlaskClient, demo: Flask, db: Session, invoice: Invoice
) -> None:
    token = link_path(demo, db, invoice)

    for path in (f"/pay/{token}x", f"/embed/pay-now/{token[:-3]}"):
        response = client.get(path)
        assert response.status_code == 404
        assert "This payment link is not valid." in response.get_data(as_text=True)


def test_does_paying_a_link_mark_the_invoice_paid(
    client: FlaskClient, demo: Flask, db: Session, invoice: Invoice
) -> None:
    path = f"/pay/{link_path(demo, db, invoice)}"
    csrf = csrf_token(client, path)

    paid = client.post(path, data=card(form_token(client.get(path)), csrf))

    assert paid.status_code == 200
    assert "Payment received" in paid.get_data(as_text=True)
    db.refresh(invoice)
    assert (invoice.status, invoice.amount_paid) == (InvoiceStatus.PAID, 4000)
    receipt = db.exec(select(OutboxMessage).where(OutboxMessage.kind == "receipt")).one()
    assert receipt.to_address == BILLING
    again = client.get(path).get_data(as_text=True)
    assert "Already paid" in again and '<form method="post"' not in again


def test_can_an_embedded_payer_retry_after_a_decline(
    client: FlaskClient, demo: Flask, db: Session, invoice: Invoice
) -> None:
    path = f"/embed/pay-now/{link_path(demo, db, invoice)}"

    declined = client.post(path, data=card(form_token(client.get(path)), number="4000000000009995"))
    paid = client.post(path, data=card(form_token(declined)))

    assert declined.status_code == 402
    assert "Your card was declined: insufficient funds." in declined.get_data(as_text=True)
    assert "Payment received" in paid.get_data(as_text=True)
    db.refresh(invoice)
    assert invoice.status == InvoiceStatus.PAID


def test_does_a_tampered_pay_now_form_token_stay_in_the_frame(
    client: FlaskClient, demo: Flask, db: Session, invoice: Invoice
) -> None:
    path = f"/embed/pay-now/{link_path(demo, db, invoice)}"

    response = client.post(path, data=card(form_token(client.get(path)) + "x"))

    assert response.status_code == 400
    assert "could not be verified" in response.get_data(as_text=True)
    assert frame_ancestors(response) == DEMO_ORIGINS
    assert "Set-Cookie" not in response.headers
    db.refresh(invoice)
    assert (invoice.status, invoice.amount_paid) == (InvoiceStatus.CREATED, 0)


def test_does_a_replaced_link_stop_working(
    client: FlaskClient, demo: Flask, db: Session, invoice: Invoice
) -> None:
    old = link_path(demo, db, invoice)
    new = link_path(demo, db, invoice)

    replaced = client.get(f"/pay/{old}").get_data(as_text=True)

    assert "This link has been replaced" in replaced and "Pay $40.00" not in replaced
    assert "Pay $40.00" in client.get(f"/pay/{new}").get_data(as_text=True)


def test_does_an_expired_link_offer_to_email_a_new_one(
    client: FlaskClient, demo: Flask, db: Session, invoice: Invoice
) -> None:
    path = f"/pay/{link_path(demo, db, invoice, days_ago=31)}"
    page = client.get(path).get_data(as_text=True)
    assert "This link has expired" in page
    assert "Email me a new link" in page and "Pay $40.00" not in page

    response = client.post(f"{path}/new-link", data={"csrf_token": csrf_token(client, path)})

    assert response.status_code == 200
    assert "We have emailed a new payment link" in response.get_data(as_text=True)
    message = db.exec(select(OutboxMessage).where(OutboxMessage.kind == "pay_link")).one()
    assert message.to_address == BILLING
    assert f"Pay invoice {invoice.number}" in message.subject
