"""Scheduling an invoice payment in the portal: the form, its errors beside the fields,
the redirect with its flash, canceling, and what other customers and forged posts get."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from flask import Flask, url_for
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from app.clock import local_today
from app.models import (
    CustomerAccount,
    Invoice,
    InvoiceLine,
    Partner,
    Role,
    ScheduledPayment,
    User,
)
from app.services.invoices import LineInput, add_invoice
from tests.web.helpers import csrf_token, sign_in

JORDAN = "customer@example.com"
MAKERS = "makers@example.com"
_TOKEN = re.compile(r'name="token" value="([^"]+)"')


@pytest.fixture
def db(demo: Flask, engine: Engine) -> Iterator[Session]:
    """A session on the demo database; the ``app`` fixture empties it afterwards."""
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _today() -> date:
    return local_today("America/New_York")  # the US demo partner's day, as the views use


def _invoice(db: Session, description: str) -> Invoice:
    db.rollback()
    return db.exec(
        select(Invoice)
        .join(InvoiceLine, InvoiceLine.invoice_id == Invoice.id)
        .where(InvoiceLine.description == description)
    ).one()


def _workshop(db: Session) -> Invoice:
    """Jordan's open $40.00 invoice, due in 25 days."""
    return _invoice(db, "Workshop series fee")


def _rows(db: Session) -> list[ScheduledPayment]:
    db.rollback()
    return list(db.exec(select(ScheduledPayment).order_by(ScheduledPayment.id)).all())


def _flashes(client: FlaskClient) -> list[str]:
    with client.session_transaction() as session:
        return [message for _category, message in session.get("_flashes", [])]


def _page(client: FlaskClient, invoice: Invoice) -> str:
    response = client.get(f"/portal/invoices/{invoice.id}/schedule")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def _post(client: FlaskClient, invoice: Invoice, **fields: str):  # noqa: ANN202
    """Send the schedule form as a browser would, with the page's tokens."""
    page = _page(client, invoice)
    match = _TOKEN.search(page)
    assert match, "no form token on the schedule page"
    chosen = re.search(r'name="payment_method_id" value="(\d+)" checked', page)
    data = {
        "csrf_token": csrf_token(client, f"/portal/invoices/{invoice.id}/schedule"),
        "token": match.group(1),
        "pay_on": (_today() + timedelta(days=3)).isoformat(),
        "amount": "",
        "payment_method_id": chosen.group(1) if chosen else "",
        **fields,
    }
    return client.post(f"/portal/invoices/{invoice.id}/schedule", data=data)


def _schedule(client: FlaskClient, db: Session) -> ScheduledPayment:
    response = _post(client, _workshop(db))
    assert response.status_code == 303, response.get_data(as_text=True)
    return _rows(db)[-1]


def _cancel(client: FlaskClient, invoice: Invoice, scheduled_id: int):  # noqa: ANN202
    token = csrf_token(client, f"/portal/invoices/{invoice.id}/schedule")
    return client.post(
        f"/portal/scheduled-payments/{scheduled_id}/cancel", data={"csrf_token": token}
    )


def test_does_the_schedule_form_show_the_invoice_a_date_field_and_the_saved_card(
    demo: Flask, client: FlaskClient, db: Session
) -> None:
    sign_in(client, JORDAN)
    invoice = _workshop(db)

    page = _page(client, invoice)

    assert invoice.number in page and "$40.00" in page
    assert '<label for="pay_on">Payment date</label>' in page
    tomorrow = (_today() + timedelta(days=1)).isoformat()
    assert f'type="date" required value="" min="{tomorrow}" max="{invoice.due_date}"' in page
    assert re.search(r'name="payment_method_id" value="\d+" checked> Visa •••• 4242', page)
    assert "Schedule payment of $40.00" in page
    assert 'name="csrf_token"' in page and _TOKEN.search(page)


def test_are_errors_shown_beside_their_fields_with_the_values_kept(
    demo: Flask, client: FlaskClient, db: Session
) -> None:
    sign_in(client, JORDAN)
    today = _today().isoformat()

    response = _post(client, _workshop(db), pay_on=today, payment_method_id="999999")

    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert f'value="{today}"' in page and 'aria-invalid="true"' in page
    assert re.search(r'aria-describedby="pay_on-hint pay_on-error"', page)
    assert '<p class="error" id="pay_on-error">Choose a day after today.' in page
    assert (
        '<p class="error" id="payment_method_id-error">Choose one of your saved payment methods.'
        in page
    )
    assert _rows(db) == []


def test_does_scheduling_redirect_to_the_invoice_page_with_a_confirmation(
    demo: Flask, client: FlaskClient, db: Session
) -> None:
    sign_in(client, JORDAN)
    invoice = _workshop(db)
    pay_on = _today() + timedelta(days=3)

    response = _post(client, invoice, pay_on=pay_on.isoformat())

    assert response.status_code == 303
    assert response.headers["Location"] == f"/portal/invoices/{invoice.id}"
    assert _flashes(client) == [
        f"Payment of $40.00 scheduled for {pay_on:%b %-d, %Y} with Visa •••• 4242."
    ]
    [row] = _rows(db)
    assert (row.invoice_id, row.amount, row.pay_on, row.status) == (
        invoice.id, 4000, pay_on, "scheduled",
    )  # fmt: skip
    again = _page(client, invoice)  # the form now says it is scheduled, with a Cancel button
    assert "Already scheduled" in again and f"Cancel payment of {pay_on:%b %-d, %Y}" in again


def test_does_sending_the_same_form_twice_schedule_once(
    demo: Flask, client: FlaskClient, db: Session
) -> None:
    sign_in(client, JORDAN)
    invoice = _workshop(db)
    page = _page(client, invoice)
    data = {
        "csrf_token": csrf_token(client, f"/portal/invoices/{invoice.id}/schedule"),
        "token": _TOKEN.search(page).group(1),  # type: ignore[union-attr]
        "pay_on": (_today() + timedelta(days=2)).isoformat(),
        "payment_method_id": re.search(r'value="(\d+)" checked', page).group(1),  # type: ignore[union-attr]
    }

    first = client.post(f"/portal/invoices/{invoice.id}/schedule", data=data)
    second = client.post(f"/portal/invoices/{invoice.id}/schedule", data=data)

    assert (first.status_code, second.status_code) == (303, 303)
    assert len(_rows(db)) == 1


def test_does_an_overdue_invoice_offer_pay_now_instead(
    demo: Flask, client: FlaskClient, db: Session
) -> None:
    sign_in(client, JORDAN)
    hall = _invoice(db, "Hall rental — October")

    page = _page(client, hall)

    assert "This invoice can't be scheduled" in page and "Pay it now instead." in page
    assert f'href="/portal/invoices/{hall.id}/pay">Pay now</a>' in page
    assert 'name="pay_on"' not in page
    token = csrf_token(client, "/portal/")
    posted = client.post(
        f"/portal/invoices/{hall.id}/schedule",
        data={"csrf_token": token, "pay_on": (_today() + timedelta(days=3)).isoformat()},
    )
    assert posted.status_code == 409 and "Pay now" in posted.get_data(as_text=True)
    assert _rows(db) == []


def test_does_a_customer_without_a_saved_method_get_a_link_to_add_one(
    demo: Flask, client: FlaskClient, db: Session
) -> None:
    partner = db.exec(select(Partner).where(Partner.slug == "us-partner")).one()
    jordan = db.exec(select(User).where(User.email == JORDAN)).one()
    account = CustomerAccount(
        partner_id=partner.id, name="Nia New", email="nia@example.com", currency="USD"
    )  # type: ignore[arg-type]
    db.add(account)
    db.flush()
    db.add(
        User(
            email="nia@example.com",
            password_hash=jordan.password_hash,
            role=Role.CUSTOMER,
            partner_id=partner.id,
            customer_account_id=account.id,
        )  # fmt: skip
    )
    invoice = add_invoice(
        db, partner=partner, account=account, lines=[LineInput("Locker", 1, 2000)],
        issue_date=_today(), due_date=_today() + timedelta(days=20),
    )  # fmt: skip
    db.commit()
    sign_in(client, "nia@example.com")

    page = _page(client, invoice)
    with demo.test_request_context():
        methods_url = url_for("portal.methods")
    assert "You have no saved payment method" in page
    assert f'<a href="{methods_url}">add a payment method</a>' in page

    response = _post(client, invoice)
    assert response.status_code == 422
    assert 'id="payment_method_id-error">Add a card or bank account first' in response.get_data(
        as_text=True
    )
    assert _rows(db) == []


def test_is_another_customers_invoice_not_found(
    demo: Flask, client: FlaskClient, db: Session
) -> None:
    sign_in(client, MAKERS)
    invoice = _workshop(db)

    assert client.get(f"/portal/invoices/{invoice.id}/schedule").status_code == 404
    token = csrf_token(client, "/portal/")
    posted = client.post(
        f"/portal/invoices/{invoice.id}/schedule",
        data={"csrf_token": token, "pay_on": (_today() + timedelta(days=3)).isoformat()},
    )
    assert posted.status_code == 404
    assert _rows(db) == []


def test_can_a_customer_cancel_a_scheduled_payment_until_it_is_processed(
    demo: Flask, client: FlaskClient, db: Session
) -> None:
    sign_in(client, JORDAN)
    row = _schedule(client, db)
    invoice = _workshop(db)
    client.get("/portal/")  # the scheduling flash is shown and gone

    response = _cancel(client, invoice, row.id)  # type: ignore[arg-type]

    assert response.status_code == 303
    assert response.headers["Location"] == f"/portal/invoices/{invoice.id}"
    assert _flashes(client) == [
        f"The payment of $40.00 scheduled for {row.pay_on:%b %-d, %Y} is canceled."
    ]
    assert _rows(db)[0].status == "canceled"
    again = _cancel(client, invoice, row.id)  # type: ignore[arg-type]
    assert again.status_code == 409
    assert "already canceled" in again.get_data(as_text=True)


def test_is_a_payment_being_processed_not_cancelable(
    demo: Flask, client: FlaskClient, db: Session
) -> None:
    sign_in(client, JORDAN)
    row = _schedule(client, db)
    row.status = "processing"
    db.add(row)
    db.commit()

    response = _cancel(client, _workshop(db), row.id)  # type: ignore[arg-type]

    assert response.status_code == 409
    assert "This payment is already being processed" in response.get_data(as_text=True)
    assert _rows(db)[0].status == "processing"


def test_is_another_customers_scheduled_payment_not_found(
    demo: Flask, client: FlaskClient, db: Session
) -> None:
    sign_in(client, JORDAN)
    row = _schedule(client, db)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/portal/")})
    sign_in(client, MAKERS)

    response = client.post(
        f"/portal/scheduled-payments/{row.id}/cancel",
        data={"csrf_token": csrf_token(client, "/portal/")},
    )

    assert response.status_code == 404
    assert _rows(db)[0].status == "scheduled"


def test_are_schedule_and_cancel_refused_without_the_csrf_token(
    demo: Flask, client: FlaskClient, db: Session
) -> None:
    sign_in(client, JORDAN)
    row = _schedule(client, db)
    invoice = _workshop(db)
    token = _TOKEN.search(_page(client, invoice))

    scheduled = client.post(
        f"/portal/invoices/{invoice.id}/schedule",
        data={"token": token.group(1) if token else "", "pay_on": "2099-01-01"},
    )
    canceled = client.post(f"/portal/scheduled-payments/{row.id}/cancel")

    assert (scheduled.status_code, canceled.status_code) == (400, 400)
    assert [r.status for r in _rows(db)] == ["scheduled"]
