"""What stops a widget payment before it moves money: card testing, bad input, bad tokens."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import Engine
from sqlmodel import Session, func, select

from app.domain.errors import NotFound
from app.models import AmountMode, Payment, PaymentStatus, Widget
from app.services import form_tokens, widget_payments
from app.services.card_testing import TooManyDeclines
from app.services.widget_payments import FieldErrors, FormTampered, PayerInput
from tests.services.payer_helpers import (
    NOW,
    WIDGET_KEY,
    card,
    harbor_widget,
    new_form,
    partner,
    pay,
    sandbox,
    secret,
)

DECLINING = "4000000000000002"


@pytest.fixture
def ctx(demo: Flask) -> Iterator[Flask]:
    with demo.app_context():
        yield demo


@pytest.fixture
def db(ctx: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def attempts(session: Session) -> int:
    session.rollback()
    return session.exec(select(func.count()).select_from(Payment)).one()


# -- card testing ----------------------------------------------------------------------


def test_is_the_sixth_attempt_from_one_address_refused_before_the_gateway(
    ctx: Flask, db: Session
) -> None:
    for n in range(5):
        email = f"tester{n}@example.com"
        declined = pay(ctx, db, number=DECLINING, email=email, address="198.51.100.9")
        assert declined.status == PaymentStatus.DECLINED
    charges, rows = len(sandbox(ctx).list_charges()), attempts(db)
    method = card(sandbox(ctx))

    with pytest.raises(TooManyDeclines) as refused:
        pay(ctx, db, method=method, email="tester9@example.com", address="198.51.100.9")

    assert refused.value.status_code == 429
    assert "Too many declined payments" in refused.value.message
    assert "10 minutes" in refused.value.message
    assert len(sandbox(ctx).list_charges()) == charges  # the processor never saw it
    assert attempts(db) == rows
    elsewhere = pay(ctx, db, method=method, email="neighbour@example.com", address="192.0.2.44")
    assert elsewhere.approved


def test_is_an_email_over_the_limit_refused_from_a_new_address(ctx: Flask, db: Session) -> None:
    for n in range(5):
        pay(ctx, db, number=DECLINING, email="carder@example.com", address=f"198.51.100.{n}")
    charges = len(sandbox(ctx).list_charges())

    with pytest.raises(TooManyDeclines):
        pay(ctx, db, email="Carder@Example.com", address="192.0.2.200")

    assert len(sandbox(ctx).list_charges()) == charges
    # Each of those addresses has one decline only: another payer there is served.
    assert pay(ctx, db, email="someone.else@example.com", address="198.51.100.0").approved


def test_do_declines_older_than_the_window_stop_counting(ctx: Flask, db: Session) -> None:
    start = NOW - timedelta(minutes=11)
    for n in range(5):
        pay(ctx, db, number=DECLINING, email=f"t{n}@example.com", address="198.51.100.9", now=start)

    with pytest.raises(TooManyDeclines):
        pay(ctx, db, address="198.51.100.9", now=start + timedelta(minutes=9))
    later = pay(ctx, db, address="198.51.100.9", now=NOW)

    assert later.approved


# -- validation ------------------------------------------------------------------------


def test_does_bad_input_name_every_field_at_fault(db: Session) -> None:
    widget = harbor_widget(db)

    with pytest.raises(FieldErrors) as caught:
        widget_payments.validate_payer(
            widget, PayerInput(name="  ", email="pat@", amount="4.99", frequency="weekly")
        )

    assert caught.value.errors == {
        "name": "Enter your name.",
        "email": "Enter an email address like name@example.com.",
        "amount": "Enter an amount between $5.00 and $500.00.",
        "frequency": "Choose how often to pay.",
    }


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("4.99", "Enter an amount between $5.00 and $500.00."),
        ("500.01", "Enter an amount between $5.00 and $500.00."),
        ("12.345", "Use at most 2 decimal places, as in 25.00."),
        ("twenty", "Enter an amount such as 25.00."),
        ("1,00.5", "Check the thousands separators, as in 1,234.50."),
        ("-5", "Enter an amount that is not negative."),
        ("", "Enter an amount such as 25.00."),
    ],
    ids=["below-min", "above-max", "three-decimals", "words", "bad-grouping", "negative", "empty"],
)
def test_is_an_amount_outside_the_widget_range_refused(
    db: Session, amount: str, message: str
) -> None:
    with pytest.raises(FieldErrors) as caught:
        widget_payments.validate_payer(
            harbor_widget(db), PayerInput(name="Pat", email="pat@example.com", amount=amount)
        )

    assert list(caught.value.errors) == ["amount"]
    assert caught.value.errors == {"amount": message}


@pytest.mark.parametrize(("amount", "cents"), [("5", 500), ("$500.00", 50000)])
def test_are_amounts_at_the_range_edges_accepted(db: Session, amount: str, cents: int) -> None:
    payer = PayerInput(
        name=" Pat  Payer", email="pat@example.com", amount=amount, frequency="annual"
    )

    valid = widget_payments.validate_payer(harbor_widget(db), payer)

    assert (valid.name, valid.amount, valid.frequency) == ("Pat Payer", cents, "annual")


def test_is_a_changed_fixed_amount_refused_as_tampering(db: Session) -> None:
    us = partner(db, "us-partner")
    widget = Widget(
        partner_id=us.id, key="annual-dues", title="Annual dues", currency="USD",
        amount_mode=AmountMode.FIXED, fixed_amount=2000,
    )  # fmt: skip
    db.add(widget)
    db.commit()

    with pytest.raises(FormTampered) as caught:
        widget_payments.validate_payer(
            widget, PayerInput(name="Pat", email="pat@example.com", amount="1.00")
        )

    assert caught.value.status_code == 400
    assert "nothing was charged" in caught.value.message
    kept = widget_payments.validate_payer(
        widget, PayerInput(name="Pat", email="pat@example.com", amount="20.00")
    )
    assert kept.amount == 2000


def test_is_a_changed_currency_refused_as_tampering(db: Session) -> None:
    with pytest.raises(FormTampered) as caught:
        widget_payments.validate_payer(
            harbor_widget(db),
            PayerInput(name="Pat", email="pat@example.com", amount="25.00", currency="EUR"),
        )

    assert caught.value.status_code == 400
    assert caught.value.message.startswith("This form takes payments in USD, not EUR.")


def test_does_an_unknown_or_inactive_widget_answer_not_found(db: Session) -> None:
    widget = harbor_widget(db)
    widget.is_active = False
    db.add(widget)
    db.commit()

    for key in ("no-such-widget", WIDGET_KEY):
        with pytest.raises(NotFound) as caught:
            widget_payments.load_widget(db, key)
        assert caught.value.status_code == 404


# -- form tokens -----------------------------------------------------------------------


def test_is_an_altered_form_token_refused(ctx: Flask) -> None:
    subject = f"widget:{WIDGET_KEY}"
    mine = form_tokens.issue(secret(ctx), subject)
    other = form_tokens.issue(secret(ctx), subject)
    spliced = mine.split(".")[0] + "." + ".".join(other.split(".")[1:])

    for bad in (spliced, mine[:-3], "", form_tokens.issue("another-secret", subject)):
        with pytest.raises(form_tokens.FormTokenInvalid) as caught:
            form_tokens.verify(secret(ctx), bad, subject=subject)
        assert caught.value.status_code == 400
    assert form_tokens.verify(secret(ctx), mine, subject=subject).nonce


def test_is_a_token_for_another_widget_refused(ctx: Flask) -> None:
    token = form_tokens.issue(secret(ctx), "widget:someone-elses-widget")

    with pytest.raises(form_tokens.FormTokenInvalid):
        form_tokens.verify(secret(ctx), token, subject=f"widget:{WIDGET_KEY}")


def test_is_an_expired_form_token_refused_as_expired(ctx: Flask) -> None:
    subject = f"widget:{WIDGET_KEY}"
    token = form_tokens.issue(secret(ctx), subject)

    with pytest.raises(form_tokens.FormTokenExpired) as caught:
        form_tokens.verify(secret(ctx), token, subject=subject, max_age=-1)

    assert caught.value.status_code == 422
    assert "nothing was charged" in caught.value.message


def test_does_each_form_get_its_own_purpose_key(ctx: Flask) -> None:
    first, second = new_form(ctx), new_form(ctx)

    assert first.purpose_key.startswith("form:")
    assert first.purpose_key != second.purpose_key
