"""The customer's Payment methods page in the browser: list, add, make default, remove,
and Retry now for a declined subscription."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from app.clock import local_today, utcnow
from app.models import CustomerAccount, Payment, PaymentMethod, Subscription, User
from app.services.subscription_billing import charge_next_period
from tests.services.payer_helpers import card, sandbox
from tests.web.helpers import csrf_token, sign_in

JORDAN = "customer@example.com"
MAKERS = "makers@example.com"
PAGE = "/portal/payment-methods"


@pytest.fixture
def db(demo: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _today() -> date:
    return local_today("America/New_York")  # the US demo partner's day, as the views use


def _user(db: Session, email: str = JORDAN) -> User:
    db.rollback()
    return db.exec(select(User).where(User.email == email)).one()


def _methods(db: Session, email: str = JORDAN) -> list[PaymentMethod]:
    db.rollback()
    account_id = _user(db, email).customer_account_id
    return list(
        db.exec(
            select(PaymentMethod)
            .where(PaymentMethod.customer_account_id == account_id)
            .order_by(PaymentMethod.id)  # type: ignore[arg-type]
        ).all()
    )


def _count(db: Session) -> int:
    db.rollback()
    return db.exec(select(func.count()).select_from(PaymentMethod)).one()


def _signed_in(client: FlaskClient, email: str = JORDAN) -> str:
    assert sign_in(client, email).status_code == 303
    return csrf_token(client, PAGE)


def _card_form(token: str, number: str = "5555555555554444", **extra: str) -> dict[str, str]:
    form = {"csrf_token": token, "method": "card", "name": "Jordan Rivera",
            "card_number": number, "exp": "12/34", "cvc": "123"}  # fmt: skip
    return form | extra


def _row(page: str, last4: str) -> str:
    """The table row of the method ending in ``last4``."""
    start = page.index(f"•••• {last4}")
    return page[page.rfind("<tr>", 0, start) : page.index("</tr>", start)]


def _card_row(db: Session, month: int, year: int, last4: str) -> PaymentMethod:
    jordan = _user(db)
    method = PaymentMethod(
        partner_id=jordan.partner_id, customer_account_id=jordan.customer_account_id,
        gateway="sandbox", token=f"pm_sbx_web_{last4}", kind="card", brand="visa",
        last4=last4, exp_month=month, exp_year=year,
    )  # fmt: skip
    db.add(method)
    db.commit()
    return method


# -- the list ---------------------------------------------------------------------------


def test_does_the_page_list_the_card_its_default_and_what_it_pays_for(
    client: FlaskClient, db: Session
) -> None:
    _signed_in(client)

    response = client.get(PAGE)

    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "<h1>Payment methods</h1>" in page
    visa = _row(page, "4242")
    assert 'class="tag">Default</span>' in visa and "Community membership" in visa
    assert "Jordan Rivera" in visa and "Make default" not in visa  # already the default
    assert 'Remove<span class="visually-hidden"> Visa ending in 4242</span>' in visa
    assert '<label for="f-name">Name on card</label>' in page
    assert '<label for="f-routing_number">Routing number</label>' in page  # a USD account
    assert 'name="make_default" value="1">' in page  # not checked: a method exists
    assert f'href="{PAGE}"' in client.get("/portal/").get_data(as_text=True)


def test_are_expiring_and_expired_cards_flagged_in_words(client: FlaskClient, db: Session) -> None:
    today = _today()
    _card_row(db, today.month, today.year, "1111")  # works through the end of this month
    last_month = today.replace(day=1) - timedelta(days=1)
    _card_row(db, last_month.month, last_month.year, "2222")
    _card_row(db, 12, today.year + 5, "3333")
    _signed_in(client)

    page = client.get(PAGE).get_data(as_text=True)

    assert "Expires soon" in _row(page, "1111") and "Expired" not in _row(page, "1111")
    assert "Expired" in _row(page, "2222")
    assert "Expires soon" not in _row(page, "3333") and "Expired" not in _row(page, "3333")


# -- adding -----------------------------------------------------------------------------


def test_can_a_customer_add_a_card_as_default(client: FlaskClient, db: Session) -> None:
    token = _signed_in(client)

    response = client.post(PAGE, data=_card_form(token, make_default="1"))

    assert response.status_code == 303 and response.headers["Location"].endswith(PAGE)
    page = client.get(PAGE).get_data(as_text=True)
    assert "Mastercard ending in 4444 saved. It is now your default payment method." in page
    assert 'class="tag">Default</span>' in _row(page, "4444")
    assert "Default" not in _row(page, "4242")
    assert "Make default" in _row(page, "4242")
    added = _methods(db)[-1]
    assert (added.last4, added.exp_month, added.exp_year, added.is_default) == (
        "4444", 12, 2034, True,
    )  # fmt: skip


def test_does_the_form_accept_a_token_from_the_hosted_card_entry(
    client: FlaskClient, db: Session
) -> None:
    token = _signed_in(client)
    hosted = client.post(
        "/sandbox/tokens",
        data={"method": "card", "card_number": "5555 5555 5555 4444", "exp": "12/34", "cvc": "123"},
    ).get_json()["token"]

    form = {"csrf_token": token, "method": "card", "name": "Jordan Rivera", "payment_token": hosted}
    response = client.post(PAGE, data=form)

    assert response.status_code == 303
    assert (_methods(db)[-1].token, _methods(db)[-1].last4) == (hosted, "4444")


def test_can_a_customer_add_a_bank_account(client: FlaskClient, db: Session) -> None:
    token = _signed_in(client)
    form = {"csrf_token": token, "method": "bank_account", "name": "Jordan Rivera",
            "routing_number": "110000000", "account_number": "000123456789"}  # fmt: skip

    response = client.post(PAGE, data=form)

    assert response.status_code == 303
    added = _methods(db)[-1]
    assert (added.kind, added.bank_name, added.last4, added.is_default) == (
        "bank_account", "STRIPE TEST BANK", "6789", False,
    )  # fmt: skip
    assert "STRIPE TEST BANK •••• 6789" in client.get(PAGE).get_data(as_text=True)


def test_is_the_default_box_checked_for_an_account_without_methods(
    client: FlaskClient, db: Session
) -> None:
    account_id = _user(db).customer_account_id
    db.execute(
        Subscription.__table__.update()  # type: ignore[attr-defined]
        .where(Subscription.__table__.c.customer_account_id == account_id)  # type: ignore[attr-defined]
        .values(status="stopped")
    )
    db.commit()
    token = _signed_in(client)
    (visa,) = _methods(db)
    assert client.post(f"{PAGE}/{visa.id}/remove", data={"csrf_token": token}).status_code == 303

    page = client.get(PAGE).get_data(as_text=True)

    assert "No payment methods on file yet." in page
    assert 'name="make_default" value="1" checked>' in page


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("4242424242424241", "Your card number is incorrect."),
        ("4000000000000002", "Your card was declined."),  # tokenizes, refused when saved
    ],
)
def test_is_a_bad_card_reported_at_the_card_number_with_nothing_stored(
    client: FlaskClient, db: Session, number: str, message: str
) -> None:
    token = _signed_in(client)
    before = _count(db)

    response = client.post(PAGE, data=_card_form(token, number, name="Jo Card", make_default="1"))

    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'aria-invalid="true" aria-describedby=" f-card_number-error"' in body
    assert message in body
    assert number not in body and 'value="123"' not in body  # number and CVC not echoed
    assert 'value="Jo Card"' in body and 'name="make_default" value="1" checked>' in body
    assert _count(db) == before


def test_are_missing_fields_each_named(client: FlaskClient, db: Session) -> None:
    token = _signed_in(client)

    response = client.post(PAGE, data={"csrf_token": token, "method": "card", "name": ""})

    body = response.get_data(as_text=True)
    assert response.status_code == 422
    for field in ("name", "card_number", "exp", "cvc"):
        assert f'id="f-{field}-error"' in body
    assert "Enter the name on the card or bank account." in body


# -- make default and remove ------------------------------------------------------------


def test_can_a_customer_make_another_card_the_default(client: FlaskClient, db: Session) -> None:
    token = _signed_in(client)
    client.post(PAGE, data=_card_form(token))
    added = _methods(db)[-1]
    page = client.get(PAGE).get_data(as_text=True)
    button = 'Make default<span class="visually-hidden"> Mastercard ending in 4444</span>'
    assert button in _row(page, "4444")
    assert f'action="{PAGE}/{added.id}/default"' in page

    response = client.post(f"{PAGE}/{added.id}/default", data={"csrf_token": token})

    assert response.status_code == 303
    page = client.get(PAGE).get_data(as_text=True)
    assert "Mastercard ending in 4444 is now your default payment method." in page
    assert 'class="tag">Default</span>' in _row(page, "4444")
    assert "Community membership" in _row(page, "4444")  # it followed the default


def test_is_removing_the_only_card_of_an_active_subscription_refused_with_the_reason(
    client: FlaskClient, db: Session
) -> None:
    token = _signed_in(client)
    (visa,) = _methods(db)

    response = client.post(f"{PAGE}/{visa.id}/remove", data={"csrf_token": token})

    body = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "This card pays for Community membership" in body
    assert "it is your only payment method. Add another card or bank account first." in body
    assert 'role="alert"' in body
    assert [m.id for m in _methods(db)] == [visa.id]


def test_can_a_customer_remove_a_card_once_another_exists(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    token = _signed_in(client)
    client.post(PAGE, data=_card_form(token))
    visa = _methods(db)[0]

    response = client.post(f"{PAGE}/{visa.id}/remove", data={"csrf_token": token})

    assert response.status_code == 303
    page = client.get(PAGE).get_data(as_text=True)
    assert "Visa ending in 4242 removed. Mastercard ending in 4444 is now your default." in page
    assert "•••• 4242" not in page
    result = sandbox(demo).charge(
        amount=100, currency="USD", token=visa.token, idempotency_key="web:after-removal"
    )
    assert result.status == "error"  # detached at the processor


def test_can_a_customer_change_or_remove_someone_elses_method(
    client: FlaskClient, db: Session
) -> None:
    token = _signed_in(client)
    (theirs,) = _methods(db, MAKERS)

    assert client.post(f"{PAGE}/{theirs.id}/default", data={"csrf_token": token}).status_code == 404
    assert client.post(f"{PAGE}/{theirs.id}/remove", data={"csrf_token": token}).status_code == 404
    assert client.post(f"{PAGE}/999999/remove", data={"csrf_token": token}).status_code == 404
    assert [m.id for m in _methods(db, MAKERS)] == [theirs.id]


def test_do_the_posts_need_a_csrf_token(client: FlaskClient, db: Session) -> None:
    _signed_in(client)
    visa = _methods(db)[0]
    before = _count(db)

    added = client.post(PAGE, data=_card_form(""))
    default = client.post(f"{PAGE}/{visa.id}/default", data={})
    removed = client.post(f"{PAGE}/{visa.id}/remove", data={})

    assert (added.status_code, default.status_code, removed.status_code) == (400, 400, 400)
    assert _count(db) == before


def test_does_the_page_need_a_customer(client: FlaskClient, db: Session) -> None:
    assert client.get(PAGE).status_code in (302, 303)
    assert sign_in(client, "admin@us-partner.example").status_code == 303
    assert client.get(PAGE).status_code in (403, 404)


# -- Retry now --------------------------------------------------------------------------


def _declined(app: Flask, db: Session) -> Subscription:
    """A new subscription of Jordan's, declined today on a card that saves and then
    declines; that card is the account default (the Visa is not)."""
    jordan = _user(db)
    account = db.get(CustomerAccount, jordan.customer_account_id)
    assert account is not None
    gateway = sandbox(app)
    bad = gateway.attach_payment_method(
        customer_ref=account.gateway_customer_ref, token=card(gateway, "4000000000000341").token
    )
    for method in _methods(db):
        method.is_default = False
        db.add(method)
    method = PaymentMethod(
        partner_id=account.partner_id, customer_account_id=account.id, gateway="sandbox",
        token=bad.token, kind="card", brand=bad.brand, last4=bad.last4, is_default=True,
    )  # fmt: skip
    db.add(method)
    db.commit()
    sub = Subscription(
        partner_id=account.partner_id, customer_account_id=account.id, payment_method_id=None,
        description="Pottery class", frequency="monthly", currency="USD", manual_amount=4000,
        start_date=_today(), next_charge_date=_today(),
    )  # fmt: skip
    db.add(sub)
    db.commit()
    with app.app_context():
        result = charge_next_period(db, gateway, sub.id, as_of=_today(), now=utcnow())
    assert result.status == "declined"
    return sub


def test_does_retry_now_after_a_new_default_card_charge_it(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    sub = _declined(demo, db)
    token = _signed_in(client)
    page = client.get(PAGE).get_data(as_text=True)
    assert "Your payment for Pottery class failed" in page and "Your card was declined." in page
    retry_action = f'action="/portal/subscriptions/{sub.id}/retry"'
    assert retry_action in page and "Retry now" in page

    added = client.post(PAGE, data=_card_form(token, "4242424242424242", make_default="1"))
    assert added.status_code == 303
    flashed = client.get(PAGE).get_data(as_text=True)
    assert "Choose “Retry now” to pay what is owed for Pottery class." in flashed
    new_card = _methods(db)[-1]

    retried = client.post(
        f"/portal/subscriptions/{sub.id}/retry", data={"csrf_token": token, "back": "methods"}
    )

    assert retried.status_code == 303 and retried.headers["Location"].endswith(PAGE)
    after_page = client.get(PAGE).get_data(as_text=True)
    assert "Payment of $40.00 received" in after_page
    assert "Your payment for Pottery class failed" not in after_page
    db.rollback()
    after = db.get(Subscription, sub.id, populate_existing=True)
    assert after is not None and (after.status, after.recurring_count) == ("recurring", 1)
    approved = db.exec(
        select(Payment).where(Payment.subscription_id == sub.id, Payment.status == "approved")
    ).one()
    assert (approved.payment_method_id, approved.last4) == (new_card.id, "4242")


def test_does_making_a_card_default_while_in_error_offer_retry_now(
    client: FlaskClient, demo: Flask, db: Session
) -> None:
    _declined(demo, db)
    token = _signed_in(client)
    visa = _methods(db)[0]

    client.post(f"{PAGE}/{visa.id}/default", data={"csrf_token": token})

    page = client.get(PAGE).get_data(as_text=True)
    assert "Visa ending in 4242 is now your default payment method." in page
    assert "Choose “Retry now” to pay what is owed for Pottery class." in page
    failed = page[page.index("Your payment for Pottery class failed") :]
    assert re.search(r"to Visa •••• 4242", failed[: failed.index("</section>")])
