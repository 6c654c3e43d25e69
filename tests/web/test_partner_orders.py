"""The partner's order pages in the browser: the list, a new draft, the builder with live
totals (htmx block vs full page), the tabs, collecting the payment with the sandbox's test
cards (approved, declined → draft → resubmitted, double submit), refusals with their
reason and status, tenant isolation, CSRF, and the order settings section."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine
from sqlmodel import Session, select

from app.clock import local_today
from app.models import CustomerAccount, Order, Partner, Payment
from app.services.order_access import PAYMENT_SETTING, SEND_SETTING
from tests.web.helpers import csrf_token, sign_in

US_ADMIN = "admin@us-partner.example"
US_SALES = "sales@us-partner.example"
DE_ADMIN = "admin@de-partner.example"
JORDAN = "customer@example.com"
HTMX = {"HX-Request": "true"}
GOOD_CARD = "4242424242424242"
DECLINED_CARD = "4000000000000002"
_SEQUENCE = re.compile(r'name="sequence" value="(\d+)"')


@pytest.fixture
def db(demo: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _jordan(db: Session) -> CustomerAccount:
    return db.exec(select(CustomerAccount).where(CustomerAccount.email == JORDAN)).one()


def _us_partner(db: Session) -> Partner:
    return db.exec(select(Partner).where(Partner.slug == "us-partner")).one()


def _text(response) -> str:  # noqa: ANN001
    return html.unescape(response.get_data(as_text=True))


def _new_order(client: FlaskClient, customer_id: int) -> int:
    token = csrf_token(client, f"/partner/customers/{customer_id}")
    response = client.post(
        f"/partner/customers/{customer_id}/orders/new", data={"csrf_token": token}
    )
    assert response.status_code == 303, response.get_data(as_text=True)
    return int(response.headers["Location"].rstrip("/").split("/")[-1])


def _line_fields(*rows: tuple[str, str, str], day: str) -> dict[str, list[str]]:
    """Form fields for ``(description, quantity, price)`` rows activating on ``day``."""
    return {
        "product": ["" for _ in rows],
        "description": [r[0] for r in rows],
        "quantity": [r[1] for r in rows],
        "unit_price": [r[2] for r in rows],
        "activation_date": [day for _ in rows],
        "frequency": ["once" for _ in rows],
    }


def _today() -> str:
    return local_today("America/New_York").isoformat()


def _order_with_lines(client: FlaskClient, db: Session) -> int:
    order_id = _new_order(client, _jordan(db).id)  # type: ignore[arg-type]
    token = csrf_token(client, f"/partner/orders/{order_id}")
    fields = _line_fields(("Workshop seat", "2", "40.00"), day=_today())
    response = client.post(
        f"/partner/orders/{order_id}/lines", data={"csrf_token": token, **fields}
    )
    assert response.status_code == 303, _text(response)
    return order_id


def _submit(
    client: FlaskClient,
    order_id: int,
    *,
    number: str | None = GOOD_CARD,
    card: str = "new",
    choice: str = "charge",
    sequence: str | None = None,
):  # noqa: ANN202
    page = client.get(f"/partner/orders/{order_id}").get_data(as_text=True)
    token = csrf_token(client, f"/partner/orders/{order_id}")
    found = _SEQUENCE.search(page)
    data = {
        "csrf_token": token,
        "sequence": sequence or (found.group(1) if found else "1"),
        "card": card,
        "choice": choice,
        "method": "card",
        "holder_name": "Jordan Rivera",
    }
    if number is not None:
        data |= {
            "card_number": number,
            "exp": "12/34" if number else "",
            "cvc": "123" if number else "",
        }
    return client.post(f"/partner/orders/{order_id}/submit", data=data)


def _order(db: Session, order_id: int) -> Order:
    db.rollback()
    order = db.get(Order, order_id, populate_existing=True)
    assert order is not None
    return order


@pytest.mark.parametrize("email", [US_ADMIN, US_SALES])
def test_do_the_order_pages_open_for_admins_and_salespeople(
    client: FlaskClient, db: Session, email: str
) -> None:
    sign_in(client, email)
    jordan = _jordan(db)

    order_id = _new_order(client, jordan.id)  # type: ignore[arg-type]
    page = _text(client.get(f"/partner/orders/{order_id}"))
    listing = _text(client.get("/partner/orders"))
    account = _text(client.get(f"/partner/customers/{jordan.id}"))

    for label in ("Product", "Description", "Quantity", "Price", "Activation date"):
        assert f">{label}</label>" in page, label
    for button in ("Add line", "Save lines"):
        assert f">{button}</button>" in page, button
    assert "Draft order SO-" in page and "Community membership — $25.00 (monthly)" in page
    assert "Add the order's lines and save them first." in page
    assert ">Orders</a>" in page and ">Summary</a>" in page and ">History</a>" in page
    number = _order(db, order_id).number
    assert number in listing and "draft" in listing
    assert number in account and ">New order</button>" in account


def test_does_a_saved_order_offer_the_payment_choices_and_the_cards_on_file(
    client: FlaskClient, db: Session
) -> None:
    sign_in(client, US_ADMIN)
    order_id = _order_with_lines(client, db)

    page = _text(client.get(f"/partner/orders/{order_id}"))

    assert ">Charge now</button>" in page and ">Authorize only</button>" in page
    assert ">Send for customer approval</button>" in page
    assert "Visa •••• 4242" in page and ">Default</span>" in page and "New card" in page
    for label in ("Card number", "Expiration", "CVC", "Name on card"):
        assert f">{label}</label>" in page, label
    assert _order(db, order_id).total == 8000


def test_do_live_totals_answer_htmx_with_the_block_and_others_with_the_page(
    client: FlaskClient, db: Session
) -> None:
    sign_in(client, US_SALES)
    order_id = _new_order(client, _jordan(db).id)  # type: ignore[arg-type]
    token = csrf_token(client, f"/partner/orders/{order_id}")
    fields = _line_fields(("Seat", "3", "12.50"), day=_today())
    url = f"/partner/orders/{order_id}/totals"

    block = client.post(url, data={"csrf_token": token, **fields}, headers=HTMX)
    page = client.post(url, data={"csrf_token": token, **fields})

    body = _text(block)
    assert block.status_code == 200 and "HX-Request" in block.headers["Vary"]
    assert body.lstrip().startswith('<div id="order-totals"') and "$37.50" in body
    assert "<html" not in body
    assert "<html" in _text(page) and "$37.50" in _text(page)
    assert _order(db, order_id).total == 0  # nothing saved


def test_do_add_and_remove_line_redraw_the_rows_without_saving(
    client: FlaskClient, db: Session
) -> None:
    sign_in(client, US_ADMIN)
    order_id = _new_order(client, _jordan(db).id)  # type: ignore[arg-type]
    token = csrf_token(client, f"/partner/orders/{order_id}")
    fields = _line_fields(("Seat", "1", "10"), day=_today())
    url = f"/partner/orders/{order_id}/lines"

    added = _text(client.post(url + "?op=add", data={"csrf_token": token, **fields}, headers=HTMX))
    two = _line_fields(("Seat", "1", "10"), ("Room", "1", "5"), day=_today())
    removed = _text(
        client.post(url + "?op=remove-0", data={"csrf_token": token, **two}, headers=HTMX)
    )

    assert added.lstrip().startswith('<div id="order-lines"') and "Line 2" in added
    assert "Line 2" not in removed and 'value="Room"' in removed
    assert _order(db, order_id).total == 0


def test_are_bad_lines_shown_beside_their_fields_and_nothing_saved(
    client: FlaskClient, db: Session
) -> None:
    sign_in(client, US_ADMIN)
    order_id = _new_order(client, _jordan(db).id)  # type: ignore[arg-type]
    token = csrf_token(client, f"/partner/orders/{order_id}")
    fields = _line_fields(("", "0", "abc"), day="2001-01-01")

    response = client.post(
        f"/partner/orders/{order_id}/lines", data={"csrf_token": token, **fields}, headers=HTMX
    )

    body = _text(response)
    assert response.status_code == 422
    for name in ("description", "quantity", "unit_price", "activation_date"):
        assert f'id="line-0-{name}-error"' in body, name
    assert _order(db, order_id).total == 0


def test_do_the_tabs_render_alone_for_htmx(client: FlaskClient, db: Session) -> None:
    sign_in(client, US_ADMIN)
    order_id = _order_with_lines(client, db)

    history = client.get(f"/partner/orders/{order_id}?tab=history", headers=HTMX)
    payment = client.get(f"/partner/orders/{order_id}?tab=payment", headers=HTMX)
    full = client.get(f"/partner/orders/{order_id}?tab=history")

    assert _text(history).lstrip().startswith('<div id="order-tab"')
    assert "Created the order" in _text(history) and "Changed the order's lines" in _text(history)
    assert "No payments yet." in _text(payment) and "<html" not in _text(payment)
    assert "<html" in _text(full) and "Created the order" in _text(full)
    assert 'aria-current="page">History' in _text(full)


def test_is_every_order_form_refused_without_a_csrf_token(client: FlaskClient, db: Session) -> None:
    sign_in(client, US_ADMIN)
    order_id = _order_with_lines(client, db)
    jordan = _jordan(db)

    for path in (
        f"/partner/customers/{jordan.id}/orders/new",
        f"/partner/orders/{order_id}/lines",
        f"/partner/orders/{order_id}/totals",
        f"/partner/orders/{order_id}/submit",
        f"/partner/orders/{order_id}/capture",
        f"/partner/orders/{order_id}/void",
        f"/partner/orders/{order_id}/draft",
        f"/partner/orders/{order_id}/cancel",
        "/partner/settings/orders",
    ):
        assert client.post(path, data={}).status_code == 400, path
    assert _order(db, order_id).status == "draft"


def test_does_another_partners_order_answer_404(client: FlaskClient, db: Session) -> None:
    sign_in(client, US_ADMIN)
    order_id = _order_with_lines(client, db)
    client.post("/logout", data={"csrf_token": csrf_token(client, "/partner/")})
    sign_in(client, DE_ADMIN)
    token = csrf_token(client, "/partner/")

    assert client.get(f"/partner/orders/{order_id}").status_code == 404
    assert client.get(f"/partner/orders/{order_id}?tab=payment", headers=HTMX).status_code == 404
    for action in ("lines", "totals", "submit", "capture", "void", "draft", "cancel"):
        response = client.post(f"/partner/orders/{order_id}/{action}", data={"csrf_token": token})
        assert response.status_code == 404, action
    new = client.post(f"/partner/customers/{_jordan(db).id}/orders/new", data={"csrf_token": token})
    assert new.status_code == 404
    assert _order(db, order_id).number not in _text(client.get("/partner/orders"))


def test_is_a_salesperson_without_the_payment_setting_refused_with_the_reason(
    client: FlaskClient, db: Session
) -> None:
    partner = _us_partner(db)
    partner.sales_collect_payment = False
    partner.sales_send_for_approval = False
    db.add(partner)
    db.commit()
    sign_in(client, US_SALES)
    order_id = _order_with_lines(client, db)

    page = _text(client.get(f"/partner/orders/{order_id}"))
    response = _submit(client, order_id, sequence="1")

    assert PAYMENT_SETTING in page and SEND_SETTING in page
    assert ">Charge now</button>" not in page
    assert response.status_code == 403
    assert PAYMENT_SETTING in _text(response)
    assert _order(db, order_id).status == "draft"
    db.rollback()
    assert db.exec(select(Payment).where(Payment.order_id == order_id)).all() == []


def test_does_a_good_test_card_activate_the_order(client: FlaskClient, db: Session) -> None:
    sign_in(client, US_SALES)  # the US demo partner lets salespeople collect
    order_id = _order_with_lines(client, db)

    response = _submit(client, order_id, number=GOOD_CARD)

    assert response.status_code == 303
    order = _order(db, order_id)
    assert order.status == "activated" and order.invoice_id is not None
    page = _text(client.get(f"/partner/orders/{order_id}"))
    assert "activated" in page and "Payment declined" not in page
    tab = _text(client.get(f"/partner/orders/{order_id}?tab=payment", headers=HTMX))
    assert "$80.00" in tab and "Visa •••• 4242" in tab and "approved" in tab


def test_is_a_declined_card_shown_converted_to_draft_and_resubmitted(
    client: FlaskClient, db: Session
) -> None:
    sign_in(client, US_ADMIN)
    order_id = _order_with_lines(client, db)

    declined = _submit(client, order_id, number=DECLINED_CARD)
    page = _text(client.get(f"/partner/orders/{order_id}"))

    assert declined.status_code == 303
    assert _order(db, order_id).status == "declined"
    assert "Payment declined" in page and ">Convert to draft</button>" in page
    assert "status-declined" in page and ">Charge now</button>" not in page
    tab = _text(client.get(f"/partner/orders/{order_id}?tab=payment"))
    assert "•••• 0002" in tab and "declined" in tab

    token = csrf_token(client, f"/partner/orders/{order_id}")
    drafted = client.post(f"/partner/orders/{order_id}/draft", data={"csrf_token": token})
    assert drafted.status_code == 303 and _order(db, order_id).status == "draft"

    again = _submit(client, order_id, number=GOOD_CARD)

    assert again.status_code == 303
    order = _order(db, order_id)
    assert order.status == "activated" and "Payment declined" not in order.tags
    history = _text(client.get(f"/partner/orders/{order_id}?tab=history"))
    assert "Payment declined" in history and "Converted to draft" in history
    assert "Order activated" in history


def test_does_submitting_the_same_page_twice_charge_once(client: FlaskClient, db: Session) -> None:
    sign_in(client, US_ADMIN)
    order_id = _order_with_lines(client, db)

    first = _submit(client, order_id, card=str(_saved_card(db)), number=None, sequence="1")
    second = _submit(client, order_id, card=str(_saved_card(db)), number=None, sequence="1")

    assert (first.status_code, second.status_code) == (303, 303)
    db.rollback()
    charges = db.exec(select(Payment).where(Payment.order_id == order_id)).all()
    assert [(p.kind, p.status) for p in charges] == [("charge", "approved")]
    assert _order(db, order_id).status == "activated"


def _saved_card(db: Session) -> int:
    from app.models import PaymentMethod

    jordan = _jordan(db)
    method = db.exec(
        select(PaymentMethod).where(
            PaymentMethod.customer_account_id == jordan.id, PaymentMethod.is_default
        )
    ).one()
    return method.id  # type: ignore[return-value]


def test_can_an_order_be_authorized_then_captured_in_part(client: FlaskClient, db: Session) -> None:
    sign_in(client, US_ADMIN)
    order_id = _order_with_lines(client, db)

    _submit(client, order_id, card=str(_saved_card(db)), number=None, choice="authorize")
    page = _text(client.get(f"/partner/orders/{order_id}"))
    token = csrf_token(client, f"/partner/orders/{order_id}")
    too_much = client.post(
        f"/partner/orders/{order_id}/capture", data={"csrf_token": token, "amount": "81.00"}
    )
    captured = client.post(
        f"/partner/orders/{order_id}/capture", data={"csrf_token": token, "amount": "50.00"}
    )

    assert ">Capture</button>" in page and ">Void authorization</button>" in page
    assert 'value="80.00"' in page
    assert too_much.status_code == 422 and "Capture at most the $80.00" in _text(too_much)
    assert captured.status_code == 303
    assert _order(db, order_id).status == "activated"


def test_does_an_illegal_move_show_its_message_with_409(client: FlaskClient, db: Session) -> None:
    sign_in(client, US_ADMIN)
    order_id = _order_with_lines(client, db)
    token = csrf_token(client, f"/partner/orders/{order_id}")

    void = client.post(f"/partner/orders/{order_id}/void", data={"csrf_token": token})
    draft = client.post(f"/partner/orders/{order_id}/draft", data={"csrf_token": token})

    assert void.status_code == 409 and "cannot be voided" in _text(void)
    assert draft.status_code == 409 and "An order that is draft" in _text(draft)


def test_does_the_settings_page_save_the_order_settings_and_show_errors_per_field(
    client: FlaskClient, db: Session
) -> None:
    sign_in(client, US_ADMIN)
    page = _text(client.get("/partner/settings"))
    token = csrf_token(client, "/partner/settings")

    bad = client.post(
        "/partner/settings/orders",
        data={"csrf_token": token, "approval_link_days": "0", "authorization_days": "31"},
    )
    good = client.post(
        "/partner/settings/orders",
        data={
            "csrf_token": token,
            "sales_send_for_approval": "on",
            "approval_link_days": "21",
            "authorization_days": "5",
        },
    )

    assert SEND_SETTING in page and PAYMENT_SETTING in page and 'id="orders-heading"' in page
    body = _text(bad)
    assert bad.status_code == 422
    assert 'id="approval_link_days-error"' in body and 'id="authorization_days-error"' in body
    assert "from 1 to 60" in body and "from 1 to 30" in body
    assert good.status_code == 303
    db.rollback()
    partner = _us_partner(db)
    db.refresh(partner)
    assert (partner.sales_send_for_approval, partner.sales_collect_payment) == (True, False)
    assert (partner.approval_link_days, partner.authorization_days) == (21, 5)


def test_may_a_salesperson_change_the_order_settings(client: FlaskClient, db: Session) -> None:
    sign_in(client, US_SALES)
    token = csrf_token(client, "/partner/")

    response = client.post(
        "/partner/settings/orders",
        data={"csrf_token": token, "approval_link_days": "5", "authorization_days": "5"},
    )

    assert response.status_code == 404
    db.rollback()
    assert _us_partner(db).approval_link_days == 14


def test_are_missing_card_fields_shown_beside_them_and_nothing_charged(
    client: FlaskClient, db: Session
) -> None:
    sign_in(client, US_ADMIN)
    order_id = _order_with_lines(client, db)

    response = _submit(client, order_id, number="")
    no_card = _submit(client, order_id, card="", number=None)

    body = _text(response)
    assert response.status_code == 422
    for name, message in (
        ("card_number", "Enter the card number."),
        ("exp", "Enter the expiration date as MM/YY."),
        ("cvc", "Enter the 3- or 4-digit security code."),
    ):
        assert f'id="f-{name}-error">{message}</p>' in body, name
    assert no_card.status_code == 422 and 'id="card-error"' in _text(no_card)
    db.rollback()
    assert db.exec(select(Payment).where(Payment.order_id == order_id)).all() == []
    assert _order(db, order_id).status == "draft"
