"""The embeddable take-payment widget over HTTP: framing, no cookies, errors, paying."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlmodel import Session, func, select
from werkzeug.test import TestResponse

from app.clock import utcnow
from app.gateway.sandbox import SandboxGateway
from app.models import AmountMode, Invoice, Partner, Payment, PaymentStatus, Widget

WIDGET = "/embed/take-payment/harbor-support"
DEMO_ORIGINS = ["http://localhost:5001", "http://127.0.0.1:5001"]
_TOKEN = re.compile(r'name="token" value="([^"]+)"')


@pytest.fixture
def db(demo: Flask, engine: Engine) -> Iterator[Session]:
    """A session on the demo database; the ``app`` fixture empties it afterwards."""
    with Session(engine, expire_on_commit=False) as session:
        yield session


def form_token(response: TestResponse) -> str:
    match = _TOKEN.search(response.get_data(as_text=True))
    assert match, "no form token in the page"
    return match.group(1)


def payer(token: str, **fields: str) -> dict[str, str]:
    """What a payer's browser posts (without JavaScript) for a $25.00 one-time gift."""
    return {
        "token": token, "currency": "USD", "name": "Pat Payer", "email": "pat@example.com",
        "amount": "25.00", "frequency": "once", "method": "card",
        "card_number": "4242 4242 4242 4242", "exp": f"12/{(utcnow().year + 3) % 100:02d}",
        "cvc": "123", **fields,
    }  # fmt: skip


def submit(
    client: FlaskClient, headers: dict[str, str] | None = None, **fields: str
) -> TestResponse:
    """Load the widget and post its form."""
    token = form_token(client.get(WIDGET))
    return client.post(WIDGET, data=payer(token, **fields), headers=headers or {})


def frame_ancestors(response: TestResponse) -> list[str]:
    policy = response.headers["Content-Security-Policy"]
    directive = next(d.strip() for d in policy.split(";") if "frame-ancestors" in d)
    return directive.split()[1:]


def sandbox(app: Flask) -> SandboxGateway:
    return app.extensions["portico"].gateway


def payments(db: Session) -> list[Payment]:
    db.rollback()
    return list(db.exec(select(Payment).where(Payment.purpose_key.startswith("form:"))).all())


# -- framing and cookies ---------------------------------------------------------------


def test_may_only_the_partners_origins_frame_the_widget(client: FlaskClient, db: Session) -> None:
    response = client.get(WIDGET)

    assert response.status_code == 200
    us = db.exec(select(Partner).where(Partner.slug == "us-partner")).one()
    assert frame_ancestors(response) == us.allowed_origins == DEMO_ORIGINS
    assert "X-Frame-Options" not in response.headers


def test_can_anyone_frame_a_widget_of_a_partner_without_origins(
    client: FlaskClient, db: Session
) -> None:
    de = db.exec(select(Partner).where(Partner.slug == "de-partner")).one()
    assert de.allowed_origins == []
    db.add(
        Widget(
            partner_id=de.id,
            key="chor-spende",
            title="Spende",
            currency="EUR",
            amount_mode=AmountMode.FIXED,
            fixed_amount=1000,
        )  # fmt: skip
    )
    db.commit()

    response = client.get("/embed/take-payment/chor-spende")

    assert response.status_code == 200
    assert frame_ancestors(response) == ["'none'"]
    assert response.headers["X-Frame-Options"] == "DENY"


def test_are_first_party_pages_kept_out_of_frames(client: FlaskClient, demo: Flask) -> None:
    response = client.get("/login")

    assert frame_ancestors(response) == ["'none'"]
    assert response.headers["X-Frame-Options"] == "DENY"


def test_does_the_widget_work_without_setting_a_cookie(client: FlaskClient, demo: Flask) -> None:
    page = client.get(WIDGET)
    refused = client.post(WIDGET, data=payer(form_token(page), email="not-an-email"))
    paid = client.post(WIDGET, data=payer(form_token(refused)))

    assert (page.status_code, refused.status_code, paid.status_code) == (200, 422, 200)
    assert "Payment received" in paid.get_data(as_text=True)
    for response in (page, refused, paid):
        assert "Set-Cookie" not in response.headers


# -- refused requests ------------------------------------------------------------------


def test_does_an_unknown_widget_show_a_plain_404_page(client: FlaskClient, demo: Flask) -> None:
    response = client.get("/embed/take-payment/no-such-widget")

    html = response.get_data(as_text=True)
    assert response.status_code == 404
    assert "This payment form does not exist or is no longer available." in html
    assert "Traceback" not in html


def test_is_a_tampered_form_token_refused(client: FlaskClient, db: Session) -> None:
    token = form_token(client.get(WIDGET))
    body, signature = token.rsplit(".", 1)
    tampered = body + "." + ("A" if signature[0] != "A" else "B") + signature[1:]

    response = client.post(WIDGET, data=payer(tampered))

    assert response.status_code == 400
    assert "could not be verified" in response.get_data(as_text=True)
    assert payments(db) == []
    # Shown inside the partner's frame: framable there, no cookie, a fresh form.
    assert frame_ancestors(response) == DEMO_ORIGINS
    assert "Set-Cookie" not in response.headers
    assert form_token(response) != token


def test_is_a_changed_currency_refused(client: FlaskClient, db: Session) -> None:
    response = submit(client, currency="EUR")

    assert response.status_code == 400
    assert "This form takes payments in USD, not EUR." in response.get_data(as_text=True)
    assert payments(db) == []
    assert frame_ancestors(response) == DEMO_ORIGINS
    assert "Set-Cookie" not in response.headers


def _described_error(html: str, field: str) -> str:
    """The error text linked to ``field``'s input through aria-describedby."""
    tag = re.search(rf'<input id="f-{field}"[^>]*>', html)
    assert tag, f"no input for {field}"
    assert f"f-{field}-error" in re.search(r'aria-describedby="([^"]*)"', tag.group(0)).group(1)
    assert 'aria-invalid="true"' in tag.group(0)
    error = re.search(rf'<p class="error" id="f-{field}-error">([^<]*)</p>', html)
    assert error, f"no error for {field}"
    return error.group(1)


def test_are_field_errors_shown_next_to_their_fields(client: FlaskClient, db: Session) -> None:
    response = submit(client, name="Pat Payer", email="pat@", amount="4.99")

    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert _described_error(html, "email") == "Enter an email address like name@example.com."
    assert _described_error(html, "amount") == "Enter an amount between $5.00 and $500.00."
    assert 'value="Pat Payer"' in html and 'value="pat@"' in html and 'value="4.99"' in html
    assert "4242 4242 4242 4242" not in html and "4242424242424242" not in html
    assert payments(db) == []


def test_are_missing_card_fields_named_and_never_echoed(client: FlaskClient, db: Session) -> None:
    response = submit(client, card_number="4242 4242 4242 4241", exp="", cvc="")

    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert _described_error(html, "exp") == "Enter the expiration date as MM/YY."
    assert _described_error(html, "cvc") == "Enter the 3- or 4-digit security code."
    assert "4242 4242 4242 4241" not in html
    assert 'value="25.00"' in html and 'value="pat@example.com"' in html
    assert payments(db) == []
    invalid = submit(client, card_number="4242 4242 4242 4241")
    assert _described_error(invalid.get_data(as_text=True), "card_number") == (
        "Your card number is incorrect."
    )


# -- paying ----------------------------------------------------------------------------


def test_does_a_payment_show_its_receipt(client: FlaskClient, db: Session) -> None:
    response = submit(client, amount="25.00")

    html = response.get_data(as_text=True)
    assert response.status_code == 200
    [payment] = payments(db)
    invoice = db.get(Invoice, payment.invoice_id)
    assert invoice is not None and invoice.status == "paid"
    assert "Payment received" in html
    assert "Thank you for supporting Harbor Community!" in html
    for text in ("$25.00", "Visa •••• 4242", f"PAY-{payment.id:06d}", invoice.number):
        assert text in html
    assert "<form" not in html


def test_can_a_declined_payer_pay_with_another_card(client: FlaskClient, db: Session) -> None:
    first = form_token(client.get(WIDGET))
    declined = client.post(
        WIDGET, data=payer(first, card_number="4000 0000 0000 0002", amount="30.00")
    )

    html = declined.get_data(as_text=True)
    assert declined.status_code == 402
    assert "Your card was declined." in html
    assert 'value="Pat Payer"' in html and 'value="pat@example.com"' in html
    assert 'value="30.00"' in html and "4000 0000 0000 0002" not in html
    second = form_token(declined)
    assert second != first

    paid = client.post(WIDGET, data=payer(second, amount="30.00"))

    assert paid.status_code == 200
    assert "Payment received" in paid.get_data(as_text=True)
    statuses = sorted(p.status for p in payments(db))
    assert statuses == [PaymentStatus.APPROVED, PaymentStatus.DECLINED]
    assert [p.decline_reason for p in payments(db) if p.status == "declined"] == [
        "Your card was declined."
    ]


def test_does_a_replayed_post_show_the_same_receipt(client: FlaskClient, db: Session) -> None:
    token = form_token(client.get(WIDGET))

    first = client.post(WIDGET, data=payer(token))
    again = client.post(WIDGET, data=payer(token))

    [payment] = payments(db)
    for response in (first, again):
        assert response.status_code == 200
        assert f"PAY-{payment.id:06d}" in response.get_data(as_text=True)
    charges = sandbox(client.application).list_charges()
    assert [c.metadata.get("purpose_key") for c in charges].count(payment.purpose_key) == 1


def test_does_an_htmx_post_swap_only_the_widget(client: FlaskClient, demo: Flask) -> None:
    response = submit(client, headers={"HX-Request": "true"})

    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert html.lstrip().startswith('<div id="widget"')
    assert "<html" not in html and "Payment received" in html
    assert "HX-Request" in response.headers["Vary"]


def test_does_the_card_testing_limit_stop_a_sixth_attempt(client: FlaskClient, db: Session) -> None:
    page = client.get(WIDGET)
    for n in range(5):
        page = client.post(
            WIDGET,
            data=payer(
                form_token(page), card_number="4000 0000 0000 0002", email=f"t{n}@x.example"
            ),
        )
        assert page.status_code == 402
    charges = len(sandbox(client.application).list_charges())

    refused = client.post(WIDGET, data=payer(form_token(page), email="fresh@example.com"))

    assert refused.status_code == 429
    assert "Too many declined payments" in refused.get_data(as_text=True)
    assert len(sandbox(client.application).list_charges()) == charges
    assert len(payments(db)) == 5


def test_is_the_embed_loader_small_javascript(client: FlaskClient, demo: Flask) -> None:
    response = client.get("/embed.js")

    body = response.get_data()
    assert response.status_code == 200
    assert response.mimetype in ("text/javascript", "application/javascript")
    assert len(body) <= 2048
    assert b"data-widget" in body and b"/embed/take-payment/" in body


def test_does_bad_input_write_nothing(client: FlaskClient, db: Session) -> None:
    invoices = db.exec(select(func.count()).select_from(Invoice)).one()

    responses = [
        submit(client, email="nope"),
        submit(client, amount="501"),
        submit(client, frequency="weekly"),
    ]

    assert [r.status_code for r in responses] == [422, 422, 422]
    assert "Choose how often to pay." in responses[2].get_data(as_text=True)
    assert payments(db) == []
    assert db.exec(select(func.count()).select_from(Invoice)).one() == invoices
