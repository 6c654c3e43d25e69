"""The customer's subscriptions and catalog in the browser: the list, canceling at period
end (confirmation, refusals, CSRF, other customers' ids), and joining or giving with a
saved or a new card."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from app.models import (
    CustomerAccount,
    OutboxMessage,
    Partner,
    Payment,
    PaymentMethod,
    Product,
    Subscription,
)
from app.services import form_tokens
from tests.web.helpers import csrf_token, sign_in

JORDAN = "customer@example.com"
MAKERS = "makers@example.com"
HTMX = {"HX-Request": "true"}
_TOKEN = re.compile(r'name="token" value="([^"]+)"')


@pytest.fixture
def db(demo: Flask, engine: Engine) -> Iterator[Session]:
    """A session on the demo database; the ``app`` fixture empties it afterwards."""
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _signed_in(client: FlaskClient, email: str = JORDAN) -> str:
    assert sign_in(client, email).status_code == 303
    return csrf_token(client, "/portal/subscriptions")


def _sub(db: Session, description: str, email: str = JORDAN) -> Subscription:
    db.rollback()
    return db.exec(
        select(Subscription)
        .join(CustomerAccount, CustomerAccount.id == Subscription.customer_account_id)
        .where(Subscription.description == description, CustomerAccount.email == email)
    ).one()


def _partner(db: Session) -> Partner:
    return db.exec(select(Partner).where(Partner.slug == "us-partner")).one()


def _product(db: Session, name: str) -> Product:
    return db.exec(select(Product).where(Product.name == name)).one()


def _day(value: date) -> str:
    return f"{value:%b} {value.day}, {value.year}"


def _text(response) -> str:  # noqa: ANN001
    return response.get_data(as_text=True)


# -- the list ------------------------------------------------------------------------------


def test_does_the_list_show_schedule_amount_stop_rule_status_and_method(
    client: FlaskClient, db: Session
) -> None:
    _signed_in(client)
    membership = _sub(db, "Community membership")

    page = _text(client.get("/portal/subscriptions"))

    assert "Community membership" in page and "Studio equipment installments" in page
    assert "Until canceled" in page and "Until $600.00 is paid (balance " in page
    assert _day(membership.next_charge_date) in page  # type: ignore[arg-type]
    assert "Monthly" in page and "$25.00" in page and "Mastercard" not in page
    assert f"/portal/subscriptions/{membership.id}/payment-method" in page
    assert 'href="/portal/catalog"' in page and "Join or give" in page
    assert re.search(
        r'Cancel at period end<span class="visually-hidden"> Community membership</span>', page
    )
    assert "Open workshop pass" not in page  # another customer's


def test_does_the_confirmation_say_what_happens_and_work_without_javascript(
    client: FlaskClient, db: Session
) -> None:
    _signed_in(client)
    membership = _sub(db, "Community membership")
    last_day = membership.next_charge_date - timedelta(days=1)  # type: ignore[operator]
    url = f"/portal/subscriptions/{membership.id}/cancel"

    page = client.get(url)
    block = client.get(url, headers=HTMX)

    sentence = (
        f"Community membership stays active until {_day(last_day)}; no further payments are taken."
    )
    assert page.status_code == 200 and sentence in _text(page) and "<html" in _text(page)
    assert f'action="{url}"' in _text(page) and "Confirm cancellation" in _text(page)
    assert block.status_code == 200 and sentence in _text(block) and "<html" not in _text(block)
    assert _sub(db, "Community membership").canceled_at is None  # asking changes nothing


def test_does_canceling_keep_the_paid_period_and_stop_the_charges(
    client: FlaskClient, db: Session
) -> None:
    token = _signed_in(client)
    membership = _sub(db, "Community membership")
    last_day = membership.next_charge_date - timedelta(days=1)  # type: ignore[operator]

    response = client.post(
        f"/portal/subscriptions/{membership.id}/cancel", data={"csrf_token": token}
    )

    assert response.status_code == 303
    assert response.headers["Location"].endswith("/portal/subscriptions")
    canceled = _sub(db, "Community membership")
    assert (canceled.stop_rule, canceled.end_date) == ("date", last_day)
    assert canceled.next_charge_date is None and canceled.canceled_at is not None
    assert canceled.status == "recurring"
    page = _text(client.get("/portal/subscriptions"))
    assert f"Canceled. Community membership stays active until {_day(last_day)}" in page
    assert f"Ends on {_day(last_day)} — canceled on " in page
    assert db.exec(
        select(OutboxMessage).where(
            OutboxMessage.dedupe_key == f"subscription_canceled:{membership.id}"
        )
    ).one()
    again = client.post(f"/portal/subscriptions/{membership.id}/cancel", data={"csrf_token": token})
    assert again.status_code == 409 and "already canceled" in _text(again)


def test_does_a_subscription_not_yet_charged_end_at_once(client: FlaskClient, db: Session) -> None:
    token = _signed_in(client)
    supporter = _sub(db, "Annual supporter plan")  # starts in 15 days: nothing charged yet

    response = client.post(
        f"/portal/subscriptions/{supporter.id}/cancel", data={"csrf_token": token}
    )

    assert response.status_code == 303
    assert _sub(db, "Annual supporter plan").status == "complete"


def test_is_a_cancel_without_its_csrf_token_refused(client: FlaskClient, db: Session) -> None:
    _signed_in(client)
    membership = _sub(db, "Community membership")

    response = client.post(f"/portal/subscriptions/{membership.id}/cancel")

    assert response.status_code == 400
    assert _sub(db, "Community membership").canceled_at is None


def test_is_canceling_refused_with_the_reason_when_the_partner_does_not_allow_it(
    client: FlaskClient, db: Session
) -> None:
    partner = _partner(db)
    partner.portal_cancel_allowed = False
    db.add(partner)
    db.commit()
    token = _signed_in(client)
    membership = _sub(db, "Community membership")
    url = f"/portal/subscriptions/{membership.id}/cancel"

    listed = _text(client.get("/portal/subscriptions"))
    asked = client.get(url)
    posted = client.post(url, data={"csrf_token": token})

    inline = client.get(url, headers=HTMX)

    assert "Cancel at period end" not in listed
    assert asked.status_code == posted.status_code == inline.status_code == 403
    assert "does not allow canceling online" in _text(inline) and "<html" not in _text(inline)
    assert "does not allow canceling online; contact Harbor Community Network" in _text(posted)
    assert _sub(db, "Community membership").canceled_at is None


def test_is_another_customers_subscription_not_found(client: FlaskClient, db: Session) -> None:
    token = _signed_in(client)
    theirs = _sub(db, "Open workshop pass", MAKERS)
    url = f"/portal/subscriptions/{theirs.id}/cancel"

    assert client.get(url).status_code == 404
    assert client.post(url, data={"csrf_token": token}).status_code == 404
    assert (
        client.post("/portal/subscriptions/999999/cancel", data={"csrf_token": token}).status_code
        == 404
    )
    assert _sub(db, "Open workshop pass", MAKERS).canceled_at is None


def test_is_a_subscription_in_error_refused_until_paid(client: FlaskClient, db: Session) -> None:
    token = _signed_in(client)
    membership = _sub(db, "Community membership")
    membership.status = "error"
    db.add(membership)
    db.commit()

    response = client.post(
        f"/portal/subscriptions/{membership.id}/cancel", data={"csrf_token": token}
    )

    assert response.status_code == 409 and "Pay what is owed first" in _text(response)


# -- the catalog ---------------------------------------------------------------------------


def test_does_the_catalog_offer_join_and_give(client: FlaskClient, db: Session) -> None:
    _signed_in(client, MAKERS)

    page = _text(client.get("/portal/catalog"))

    assert "Community membership" in page and "$25.00 a month" in page
    assert "Annual supporter plan" in page and "$120.00 a year" in page
    assert "Youth programs fund" in page and "Give monthly" in page
    assert "Workshop seat" not in page and "Mitgliedschaft" not in page
    membership = _product(db, "Community membership")
    assert f'href="/portal/catalog/{membership.id}"' in page
    assert "You are a member" not in page


def test_does_a_member_see_you_are_a_member_and_cannot_join_again(
    client: FlaskClient, db: Session, demo: Flask
) -> None:
    csrf = _signed_in(client)
    membership = _product(db, "Community membership")
    jordan = db.exec(select(CustomerAccount).where(CustomerAccount.email == JORDAN)).one()
    card = db.exec(
        select(PaymentMethod).where(PaymentMethod.customer_account_id == jordan.id)
    ).first()
    assert card is not None
    # A form token as an older page would carry it, from before Jordan was a member.
    token = form_tokens.issue(
        demo.config["PORTICO"].secret_key, f"join:{jordan.id}:{membership.id}"
    )

    catalog = _text(client.get("/portal/catalog"))
    form = client.get(f"/portal/catalog/{membership.id}")
    posted = client.post(
        f"/portal/catalog/{membership.id}",
        data={"csrf_token": csrf, "token": token, "saved_method": str(card.id)},
    )

    assert "You are a member" in catalog
    assert "You are a member" in _text(form) and 'name="token"' not in _text(form)
    assert posted.status_code == 409 and "already a member" in _text(posted)
    db.rollback()
    assert not db.exec(select(Payment).where(Payment.purpose_key.startswith("form:"))).all()


def _join_form(client: FlaskClient, product_id: int) -> tuple[str, str, list[str]]:
    page = _text(client.get(f"/portal/catalog/{product_id}"))
    token = _TOKEN.search(page)
    assert token, "no form token"
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf
    saved = re.findall(r'name="saved_method" value="(\d+)"', page)
    return csrf.group(1), token.group(1), saved


def test_can_a_customer_join_with_a_saved_card(client: FlaskClient, db: Session) -> None:
    _signed_in(client, MAKERS)
    membership = _product(db, "Community membership")
    csrf, token, saved = _join_form(client, membership.id)  # type: ignore[arg-type]
    assert saved, "the saved card is offered"

    response = client.post(
        f"/portal/catalog/{membership.id}",
        data={"csrf_token": csrf, "token": token, "saved_method": saved[0]},
    )
    twice = client.post(
        f"/portal/catalog/{membership.id}",
        data={"csrf_token": csrf, "token": token, "saved_method": saved[0]},
    )

    assert response.status_code == twice.status_code == 303
    assert response.headers["Location"].endswith("/portal/subscriptions")
    sub = _sub(db, "Community membership", MAKERS)
    assert sub.product_id == membership.id and sub.recurring_count == 1
    page = _text(client.get("/portal/subscriptions"))
    next_on = _day(sub.next_charge_date)  # type: ignore[arg-type]
    assert f"Welcome! Community membership is active; next payment $25.00 on {next_on}." in page
    assert (
        db.exec(
            select(func.count()).select_from(Payment).where(Payment.subscription_id == sub.id)
        ).one()
        == 1
    )  # the second post replayed the first


def test_can_a_customer_give_with_a_new_card(client: FlaskClient, db: Session) -> None:
    _signed_in(client, MAKERS)
    fund = _product(db, "Youth programs fund")
    csrf, token, _saved = _join_form(client, fund.id)  # type: ignore[arg-type]
    cards = db.exec(select(func.count()).select_from(PaymentMethod)).one()

    response = client.post(
        f"/portal/catalog/{fund.id}",
        data={
            "csrf_token": csrf, "token": token, "amount": "30.00", "frequency": "quarterly",
            "saved_method": "new", "name": "Maple Street Makers",
            "card_number": "4242 4242 4242 4242", "exp": "12/34", "cvc": "123",
        },
    )  # fmt: skip

    assert response.status_code == 303
    gift = _sub(db, "Youth programs fund", MAKERS)
    assert (gift.frequency, gift.manual_amount) == ("quarterly", 3000)
    assert db.exec(select(func.count()).select_from(PaymentMethod)).one() == cards + 1
    assert "Thank you! Your gift to Youth programs fund is set up" in _text(
        client.get("/portal/subscriptions")
    )


def _members(db: Session, product_id: int) -> int:
    """How many subscriptions of the product exist (the demo's own included)."""
    return len(db.exec(select(Subscription).where(Subscription.product_id == product_id)).all())


def test_does_a_declined_card_show_the_reason_and_a_fresh_form(
    client: FlaskClient, db: Session
) -> None:
    _signed_in(client, MAKERS)
    membership = _product(db, "Community membership")
    csrf, token, _saved = _join_form(client, membership.id)  # type: ignore[arg-type]
    members_before = _members(db, membership.id)  # type: ignore[arg-type]

    response = client.post(
        f"/portal/catalog/{membership.id}",
        data={
            "csrf_token": csrf, "token": token, "saved_method": "new",
            "card_number": "4000000000000002", "exp": "12/34", "cvc": "123",
        },
    )  # fmt: skip

    body = _text(response)
    assert response.status_code == 422 and "The payment was declined" in body
    assert "Try another card" in body
    fresh = _TOKEN.search(body)
    assert fresh and fresh.group(1) != token
    assert "4000000000000002" not in body
    db.rollback()
    assert _members(db, membership.id) == members_before  # nothing created


def test_are_bad_gift_fields_shown_beside_them(client: FlaskClient, db: Session) -> None:
    _signed_in(client, MAKERS)
    fund = _product(db, "Youth programs fund")
    csrf, token, saved = _join_form(client, fund.id)  # type: ignore[arg-type]

    response = client.post(
        f"/portal/catalog/{fund.id}",
        data={"csrf_token": csrf, "token": token, "amount": "0.50", "frequency": "weekly",
              "saved_method": saved[0]},
    )  # fmt: skip

    body = _text(response)
    assert response.status_code == 422
    assert 'id="f-amount-error"' in body and "Enter an amount between $1.00 and $10,000.00" in body
    assert 'id="f-frequency-error"' in body
    assert re.search(r'id="f-amount"[^>]*value="0.50"', body)


def test_is_a_join_without_its_csrf_token_refused(client: FlaskClient, db: Session) -> None:
    _signed_in(client, MAKERS)
    membership = _product(db, "Community membership")
    _csrf, token, saved = _join_form(client, membership.id)  # type: ignore[arg-type]
    members_before = _members(db, membership.id)  # type: ignore[arg-type]

    response = client.post(
        f"/portal/catalog/{membership.id}", data={"token": token, "saved_method": saved[0]}
    )

    assert response.status_code == 400
    db.rollback()
    assert _members(db, membership.id) == members_before  # nothing created


def test_is_another_partners_product_not_found(client: FlaskClient, db: Session) -> None:
    token = _signed_in(client, MAKERS)
    german = _product(db, "Mitgliedschaft")

    assert client.get(f"/portal/catalog/{german.id}").status_code == 404
    assert (
        client.post(f"/portal/catalog/{german.id}", data={"csrf_token": token}).status_code == 404
    )


def test_does_the_partner_see_that_the_customer_canceled(client: FlaskClient, db: Session) -> None:
    token = _signed_in(client)
    membership = _sub(db, "Community membership")
    client.post(f"/portal/subscriptions/{membership.id}/cancel", data={"csrf_token": token})
    client.post("/logout", data={"csrf_token": token})
    ends = _day(_sub(db, "Community membership").end_date)  # type: ignore[arg-type]

    assert sign_in(client, "admin@us-partner.example").status_code == 303
    page = _text(client.get(f"/partner/subscriptions/{membership.id}"))

    assert "Canceled by the customer" in page and f"ends {ends}" in page
