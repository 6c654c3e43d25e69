"""The customer's approval page (/approve/<token>) and the partner's send and signature
routes over HTTP: what the page shows, signing with and without payment, declines, bad,
replaced and expired links, single use, CSRF, field errors, tenancy."""

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
from app.domain.orders import DECLINED_TAG
from app.models import Order, OutboxMessage, Partner
from app.services import order_approval
from tests.services.account_helpers import DE_ADMIN, US_ADMIN, US_SALES
from tests.services.approval_helpers import (
    PNG_MAGIC,
    SETUP,
    SUPPORT,
    approval_emails,
    emailed_token,
    png_data_url,
    secret,
    set_partner,
)
from tests.services.order_helpers import (
    DECLINES,
    GOOD,
    find_user,
    history,
    make_order,
    new_customer,
    processor_calls,
    reload,
)
from tests.web.helpers import csrf_token, sign_in

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CARD = {"card_number": GOOD, "exp": "12/34", "cvc": "123"}


@pytest.fixture
def db(demo: Flask, engine: Engine) -> Iterator[Session]:
    # No app context pushed here: each request must get its own (its own `g` and login).
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _order(db: Session, *, by: str = US_ADMIN) -> Order:
    """A $45.00 order of a new customer; salespeople may send it but not collect payment."""
    user = find_user(db, by)
    set_partner(db, user.partner_id, sales_send_for_approval=True, sales_collect_payment=False)  # type: ignore[arg-type]
    return make_order(db, new_customer(db, user.partner_id), [SUPPORT, SETUP], by=user)  # type: ignore[arg-type]


def _sent(app: Flask, db: Session, order: Order, *, by: str = US_ADMIN, days_ago: int = 0) -> str:
    """Send the order (``days_ago``) through the service; the emailed link's path."""
    now = utcnow() - timedelta(days=days_ago)
    with app.app_context():  # the email is rendered from templates
        _, (email_id,) = order_approval.send_for_approval(
            db, find_user(db, by), order.id, now=now, base_url="", secret=secret(app)
        )
    return f"/approve/{emailed_token(db, email_id)}"


def _post(client: FlaskClient, path: str, **fields: str) -> TestResponse:
    """Post the approval form as a browser would: the page's CSRF token and sequence."""
    page = client.get(path).get_data(as_text=True)
    token = _CSRF.search(page)
    sequence = re.search(r'name="sequence" value="(\d+)"', page)
    assert token and sequence, page
    data = {"csrf_token": token.group(1), "sequence": sequence.group(1)}
    data |= {"signer_name": "Nora Quist", "signature_kind": "typed", "typed_signature": "Nora Q"}
    return client.post(path, data=data | fields)


def _text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


# -- the page ---------------------------------------------------------------------------------


def test_does_the_page_show_the_order_and_a_form_to_sign_and_pay(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    order = _order(db)
    response = client.get(_sent(demo, db, order))

    assert response.status_code == 200
    page = _text(response)
    for text in (order.number, "Harbor Community Network", "Support plan", "Setup", "$25.00"):
        assert text in page
    assert "$10.00" in page and "$20.00" in page  # price and amount of 2 × Setup
    assert "Nov 21, 2026" in page  # activation date
    assert "Subtotal" in page and "Tax" in page and "$45.00" in page
    for label in ("Name", "Type your signature", "Draw your signature", "Typed signature"):
        assert f">{label}<" in page or f"> {label}<" in page, label
    assert '<label for="f-signer_name">Name</label>' in page
    assert '<label for="f-card_number">Card number</label>' in page
    assert '<label for="f-exp">Expiration</label>' in page
    assert '<label for="f-cvc">CVC</label>' in page
    assert "<canvas" in page and "js/signature.js" in page and ">Clear</button>" in page
    assert "Approve and pay $45.00" in page
    assert "style=" not in page and not re.search(r"<script(?![^>]*\bsrc=)", page)
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_does_an_order_without_payment_ask_only_for_the_approval(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    order = _order(db, by=US_SALES)  # sales may send, not collect
    page = _text(client.get(_sent(demo, db, order, by=US_SALES)))
    assert "Approve order" in page and "Card number" not in page and "Approve and pay" not in page


# -- approving --------------------------------------------------------------------------------


def test_does_approving_without_payment_confirm_and_keep_the_signature(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    order = _order(db, by=US_SALES)
    response = _post(client, _sent(demo, db, order, by=US_SALES), signer_name="Nora Quist")

    assert response.status_code == 200
    assert "Order approved" in _text(response) and "Approve order" not in _text(response)
    order = reload(db, order)
    assert order.status == "approved" and order.signature_kind == "typed"
    assert order.signer_name == "Nora Quist" and order.signature == "Nora Q"
    assert order.signer_address == "127.0.0.1" and order.signed_at is not None


def test_does_approving_and_paying_activate_the_order_and_show_the_receipt_note(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    order = _order(db)
    response = _post(client, _sent(demo, db, order), **CARD)

    page = _text(response)
    assert response.status_code == 200, page
    assert "Order approved" in page and "$45.00" in page and "4242" in page
    assert "A receipt has been emailed to you." in page
    order = reload(db, order)
    assert order.status == "activated" and order.invoice_id is not None
    receipts = db.exec(select(OutboxMessage).where(OutboxMessage.kind == "receipt")).all()
    assert any(row.to_address.startswith("nora.quist@") for row in receipts)


def test_does_a_declined_card_show_the_reason_and_that_the_partner_follows_up(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    order = _order(db)
    response = _post(client, _sent(demo, db, order), **(CARD | {"card_number": DECLINES}))

    assert response.status_code == 402
    page = _text(response)
    assert "Payment declined" in page and "Harbor Community Network will follow up" in page
    order = reload(db, order)
    assert order.status == "declined" and DECLINED_TAG in order.tags
    assert order.decline_reason in page.replace("&#39;", "'")


def test_is_a_second_approval_of_the_same_link_refused_without_a_second_charge(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    order = _order(db)
    path = _sent(demo, db, order)
    page = client.get(path).get_data(as_text=True)
    form = {
        "csrf_token": _CSRF.search(page).group(1),  # type: ignore[union-attr]
        "sequence": "1",
        "signer_name": "Nora Quist",
        "signature_kind": "typed",
        "typed_signature": "Nora Q",
    } | CARD
    assert client.post(path, data=form).status_code == 200

    again = client.post(path, data=form | {"signer_name": "Somebody Else"})

    assert again.status_code == 200 and "Order approved" in _text(again)
    assert "Approve and pay" not in _text(again)
    assert len(processor_calls(demo, order)) == 1
    assert reload(db, order).signer_name == "Nora Quist"
    assert "Order approved" in _text(client.get(path))  # the link now shows the outcome


def test_are_field_errors_shown_next_to_their_fields(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    order = _order(db)
    response = _post(client, _sent(demo, db, order), signer_name="", typed_signature="")

    assert response.status_code == 422
    page = _text(response)
    assert 'aria-describedby="f-signer_name-hint f-signer_name-error"' in page
    assert 'id="f-signer_name-error">Enter your name.<' in page
    assert 'id="f-typed_signature-error">Type your name as your signature.<' in page
    assert 'id="f-card_number-error"' in page  # no card entered
    assert reload(db, order).status == "pending_approval"
    assert processor_calls(demo, order) == []


def test_is_a_drawn_signature_that_is_not_a_png_refused_at_the_canvas(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    order = _order(db, by=US_SALES)
    response = _post(
        client,
        _sent(demo, db, order, by=US_SALES),
        signature_kind="drawn",
        drawn_signature="data:image/svg+xml;base64,PHN2Zy8+",
    )
    assert response.status_code == 422
    page = _text(response)
    assert 'id="f-drawn_signature-error">The drawn signature must be a PNG image.' in page
    assert "f-drawn_signature-hint f-drawn_signature-error" in page  # the canvas names it
    assert reload(db, order).status == "pending_approval"


def test_is_a_drawn_signature_over_200_kb_refused(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    order = _order(db, by=US_SALES)
    response = _post(
        client,
        _sent(demo, db, order, by=US_SALES),
        signature_kind="drawn",
        drawn_signature=png_data_url(200 * 1024 + 10),
    )
    assert response.status_code == 422 and "too large" in _text(response)


def test_does_the_partner_see_the_drawn_signature_and_no_one_else(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    order = _order(db, by=US_SALES)
    drawing = png_data_url(2048)
    path = _sent(demo, db, order, by=US_SALES)
    assert _post(client, path, signature_kind="drawn", drawn_signature=drawing).status_code == 200
    image = f"/partner/orders/{order.id}/signature.png"
    assert client.get(image).status_code in (302, 401, 404)  # the customer is not signed in

    sign_in(client, US_SALES)
    response = client.get(image)

    assert response.status_code == 200 and response.mimetype == "image/png"
    assert response.data.startswith(PNG_MAGIC) and len(response.data) == 2048
    assert "no-store" in response.headers["Cache-Control"]
    other = demo.test_client()
    sign_in(other, DE_ADMIN)
    assert other.get(image).status_code == 404


def test_is_the_approval_form_refused_without_its_csrf_token(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    order = _order(db, by=US_SALES)
    path = _sent(demo, db, order, by=US_SALES)
    client.get(path)
    response = client.post(
        path, data={"signer_name": "Nora", "signature_kind": "typed", "typed_signature": "Nora"}
    )
    assert response.status_code == 400
    assert reload(db, order).status == "pending_approval"


# -- links that do not work -------------------------------------------------------------------


def test_is_a_tampered_link_a_404_with_no_order_data(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    order = _order(db)
    path = _sent(demo, db, order)
    for bad in (path[:-3] + "xyz", "/approve/nonsense"):
        response = client.get(bad)
        assert response.status_code == 404
        page = _text(response)
        assert "This approval link is not valid." in page
        assert order.number not in page and "Support plan" not in page
    token = _CSRF.search(_text(client.get(path)))
    response = client.post(path[:-3] + "xyz", data={"csrf_token": token.group(1)})  # type: ignore[union-attr]
    assert response.status_code == 404


def test_is_an_expired_link_a_410_that_says_when(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    order = _order(db)
    path = _sent(demo, db, order, days_ago=15)
    response = client.get(path)

    assert response.status_code == 410
    page = _text(response)
    expired = reload(db, order).approval_expires_at
    assert expired is not None
    assert f"expired on {expired:%b} {expired.day}, {expired.year}" in page
    assert order.number not in page and "Support plan" not in page


def test_does_a_resent_order_stop_the_old_link(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    order = _order(db)
    old = _sent(demo, db, order)
    new = _sent(demo, db, order)
    response = client.get(old)
    assert response.status_code == 410 and "newer approval link" in _text(response)
    assert order.number not in _text(response)
    assert client.get(new).status_code == 200


# -- the partner's send route -----------------------------------------------------------------


def _flashes(client: FlaskClient) -> list[tuple[str, str]]:
    with client.session_transaction() as session:
        return list(session.get("_flashes", []))


def _send(client: FlaskClient, order: Order) -> TestResponse:
    token = csrf_token(client, "/partner/")
    return client.post(f"/partner/orders/{order.id}/send-for-approval", data={"csrf_token": token})


def test_does_sending_email_the_link_and_go_back_to_the_order(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    order = _order(db)
    sign_in(client, US_ADMIN)

    response = _send(client, order)

    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/partner/orders/{order.id}")
    ((category, message),) = _flashes(client)
    assert category == "message" and "sent to the customer for approval" in message
    (email,) = approval_emails(db)
    token = emailed_token(db, email.id)  # type: ignore[arg-type]
    assert email.text_body.count("http://localhost/approve/") == 1
    assert client.get(f"/approve/{token}").status_code == 200
    assert reload(db, order).status == "pending_approval"

    assert _send(client, order).status_code == 303  # re-send
    assert client.get(f"/approve/{token}").status_code == 410
    assert history(db, order) == ["order.sent_for_approval", "order.approval_resent"]


def test_is_a_refused_send_flashed_with_its_reason(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    order = _order(db, by=US_SALES)
    set_partner(db, order.partner_id, sales_send_for_approval=False)
    sign_in(client, US_SALES)

    response = _send(client, order)

    assert response.status_code == 303
    ((category, message),) = _flashes(client)
    assert category == "error"
    assert "Allow salespeople to send an order to customers for approval" in message
    assert reload(db, order).status == "draft" and approval_emails(db) == []


@pytest.mark.parametrize("path", ["send-for-approval", "signature.png"])
def test_is_another_partners_order_a_404(
    client: FlaskClient, demo: Flask, db: Session, path: str
) -> None:
    order = _order(db)
    sign_in(client, DE_ADMIN)
    url = f"/partner/orders/{order.id}/{path}"
    if path == "signature.png":
        response = client.get(url)
    else:
        response = client.post(url, data={"csrf_token": csrf_token(client, "/partner/")})
    assert response.status_code == 404
    assert reload(db, order).status == "draft" and approval_emails(db) == []


def test_is_sending_refused_without_a_csrf_token(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    order = _order(db)
    sign_in(client, US_ADMIN)
    response = client.post(f"/partner/orders/{order.id}/send-for-approval")
    assert response.status_code == 400 and approval_emails(db) == []


def test_does_the_partner_setting_decide_whether_the_page_takes_a_card(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    order = _order(db, by=US_SALES)
    partner = db.get(Partner, order.partner_id)
    assert partner is not None and not partner.sales_collect_payment
    set_partner(db, order.partner_id, sales_collect_payment=True)
    page = _text(client.get(_sent(demo, db, order, by=US_SALES)))
    assert "Approve and pay $45.00" in page
