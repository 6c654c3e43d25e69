"""The sandbox's hosted card entry: card fields in, a token out; the widget takes the token."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient
from sqlmodel import Session, select

from app.models import Payment, PaymentMethod

WIDGET = "/embed/take-payment/harbor-support"


def _form_token(client: FlaskClient) -> str:
    page = client.get(WIDGET).get_data(as_text=True)
    match = re.search(r'name="token" value="([^"]+)"', page)
    assert match
    return match.group(1)


def test_does_hosted_entry_turn_card_fields_into_a_token(client: FlaskClient, demo: Flask) -> None:
    response = client.post(
        "/sandbox/tokens",
        data={"method": "card", "card_number": "4242 4242 4242 4242", "exp": "12/34", "cvc": "123"},
    )

    assert response.status_code == 201
    body = response.get_json()
    assert body["brand"] == "visa" and body["last4"] == "4242"
    assert "4242424242424242" not in response.get_data(as_text=True)
    assert body["token"]


def test_does_hosted_entry_name_the_field_at_fault(client: FlaskClient, demo: Flask) -> None:
    response = client.post(
        "/sandbox/tokens",
        data={"method": "card", "card_number": "4242 4242 4242 4241", "exp": "12/34", "cvc": "1"},
    )

    assert response.status_code == 422
    assert "card_number" in response.get_json()["errors"]


def test_does_the_widget_accept_a_hosted_token_without_card_fields(
    client: FlaskClient, demo: Flask, engine
) -> None:  # noqa: ANN001
    token = client.post(
        "/sandbox/tokens",
        data={"method": "card", "card_number": "5555 5555 5555 4444", "exp": "12/34", "cvc": "123"},
    ).get_json()["token"]

    page = client.post(
        WIDGET,
        data={"token": _form_token(client), "name": "Hosted Payer", "email": "hosted@example.com",
              "amount": "12.00", "frequency": "once", "method": "card", "payment_token": token},
    ).get_data(as_text=True)  # fmt: skip

    assert "Payment received" in page
    assert "Mastercard •••• 4444" in page
    with Session(engine) as session:
        payment = session.exec(select(Payment).where(Payment.amount == 1200)).one()
        assert payment.status == "approved" and payment.last4 == "4444"


def test_can_a_card_saved_on_a_customer_be_used_by_its_bare_token(
    client: FlaskClient, demo: Flask, engine
) -> None:  # noqa: ANN001
    with Session(engine) as session:
        saved = session.exec(select(PaymentMethod).where(PaymentMethod.last4 == "4242")).first()
        assert saved is not None
        stolen = saved.token

    response = client.post(
        WIDGET,
        data={"token": _form_token(client), "name": "Someone Else", "email": "else@example.com",
              "amount": "12.00", "frequency": "once", "method": "card", "payment_token": stolen},
    )  # fmt: skip

    assert response.status_code == 422
    assert "could not be found" in response.get_data(as_text=True)
    with Session(engine) as session:
        assert session.exec(select(Payment).where(Payment.amount == 1200)).first() is None
