"""Paying through the take-payment widget: receipts, recurring gifts, declines, exactly once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import date

import pytest
from flask import Flask
from sqlalchemy import Engine
from sqlmodel import Session, func, select

from app.models import (
    CustomerAccount,
    DeclineRecord,
    Invoice,
    InvoiceStatus,
    OutboxMessage,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Subscription,
)
from app.services.form_tokens import FormToken
from app.services.receipts import PaymentOutcome
from tests.services.payer_helpers import (
    ADDRESS,
    NOW,
    bank_account,
    card,
    charges_for,
    new_form,
    pay,
    sandbox,
)

THREADS = 20


@pytest.fixture
def ctx(demo: Flask) -> Iterator[Flask]:
    """The demo app with an app context (receipt emails are rendered from templates)."""
    with demo.app_context():
        yield demo


@pytest.fixture
def db(ctx: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def attempt_of(session: Session, form: FormToken) -> Payment:
    session.rollback()
    return session.exec(select(Payment).where(Payment.purpose_key == form.purpose_key)).one()


def count(session: Session, model: type) -> int:
    session.rollback()
    return session.exec(select(func.count()).select_from(model)).one()


# -- approved --------------------------------------------------------------------------


def test_does_a_one_time_payment_give_a_receipt_and_a_paid_invoice(ctx: Flask, db: Session) -> None:
    form = new_form(ctx)

    outcome = pay(ctx, db, form=form, amount="25.00")

    assert outcome.approved
    attempt = attempt_of(db, form)
    invoice = db.get(Invoice, attempt.invoice_id)
    assert invoice is not None
    receipt = outcome.receipt
    assert receipt is not None
    assert (receipt.amount, receipt.currency) == (2500, "USD")
    assert receipt.method_label == "Visa •••• 4242"
    assert receipt.reference == f"PAY-{attempt.id:06d}"
    assert receipt.reference.startswith("PAY-")
    assert receipt.invoice_number == invoice.number
    assert receipt.paid_on == NOW.date()
    assert receipt.next_charge_date is None
    assert invoice.status == InvoiceStatus.PAID
    assert invoice.total == invoice.amount_paid == 2500
    assert invoice.subscription_id is None
    assert attempt.status == PaymentStatus.APPROVED and attempt.amount == 2500
    assert [c.status for c in charges_for(sandbox(ctx), form)] == ["succeeded"]


def test_does_a_payment_find_or_create_the_customer_by_email(ctx: Flask, db: Session) -> None:
    first, second = new_form(ctx), new_form(ctx)

    pay(ctx, db, form=first, email="pat@example.com")
    pay(ctx, db, form=second, email="Pat@Example.com", amount="40.00")

    accounts = db.exec(
        select(CustomerAccount).where(func.lower(CustomerAccount.email) == "pat@example.com")
    ).all()
    assert len(accounts) == 1
    assert accounts[0].name == "Pat Payer"
    owners = {attempt_of(db, f).customer_account_id for f in (first, second)}
    assert owners == {accounts[0].id}


def test_is_a_receipt_email_written_to_the_payer(ctx: Flask, db: Session) -> None:
    form = new_form(ctx)

    outcome = pay(ctx, db, form=form, email="pat@example.com")

    attempt = attempt_of(db, form)
    message = db.exec(
        select(OutboxMessage).where(OutboxMessage.dedupe_key == f"receipt:payment:{attempt.id}")
    ).one()
    assert message.to_address == "pat@example.com"
    assert message.kind == "receipt"
    assert f"PAY-{attempt.id:06d}" in message.text_body
    assert outcome.email_ids == [message.id]


def test_does_a_monthly_gift_start_a_subscription(ctx: Flask, db: Session) -> None:
    form = new_form(ctx)
    method = card(sandbox(ctx))

    outcome = pay(ctx, db, form=form, method=method, frequency="monthly", amount="15.00")

    assert outcome.approved
    attempt = attempt_of(db, form)
    subscription = db.get(Subscription, attempt.subscription_id)
    assert subscription is not None
    assert subscription.status == "recurring"
    assert subscription.frequency == "monthly"
    assert subscription.recurring_count == 1
    assert subscription.amount_charged == subscription.manual_amount == 1500
    assert subscription.start_date == NOW.date()
    assert subscription.next_charge_date == date(2026, 4, 2)
    saved = db.get(PaymentMethod, subscription.payment_method_id)
    assert saved is not None
    assert saved.is_default and saved.token == method.token and saved.last4 == "4242"
    assert (
        saved.customer_account_id == subscription.customer_account_id == attempt.customer_account_id
    )
    account = db.get(CustomerAccount, attempt.customer_account_id)
    assert account is not None and account.gateway_customer_ref
    invoice = db.get(Invoice, attempt.invoice_id)
    assert invoice is not None and invoice.subscription_id == subscription.id
    assert outcome.receipt is not None
    assert outcome.receipt.next_charge_date == date(2026, 4, 2)
    assert outcome.receipt.frequency == "monthly"


@pytest.mark.parametrize(
    ("account_number", "status", "message"),
    [
        ("000123456789", PaymentStatus.APPROVED, ""),
        ("000111111116", PaymentStatus.DECLINED, "The bank account could not be found."),
    ],
    ids=["approves", "declines"],
)
def test_can_a_payer_pay_by_bank_account(
    ctx: Flask, db: Session, account_number: str, status: str, message: str
) -> None:
    form = new_form(ctx)

    outcome = pay(ctx, db, form=form, method=bank_account(sandbox(ctx), account_number))

    assert outcome.status == status
    assert outcome.message == message
    assert attempt_of(db, form).method == "bank_account"
    if outcome.approved:
        assert outcome.receipt is not None
        assert outcome.receipt.method_label == "Bank account •••• 6789"


# -- declined --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("number", "reason", "code"),
    [
        ("4000000000000002", "Your card was declined.", "card_declined"),
        ("4000000000009995", "Your card was declined: insufficient funds.", "insufficient_funds"),
        ("4000000000009987", "Your card was declined.", "lost_card"),
        ("4000000000000069", "Your card has expired.", "expired_card"),
        ("4000000000000127", "Your card's security code is incorrect.", "incorrect_cvc"),
        ("4000000000000341", "Your card was declined.", "card_declined"),
    ],
    ids=["generic", "insufficient-funds", "lost", "expired", "cvc", "one-time-0341"],
)
def test_does_a_declined_card_show_its_reason_and_record_the_attempt(
    ctx: Flask, db: Session, number: str, reason: str, code: str
) -> None:
    form = new_form(ctx)
    invoices = count(db, Invoice)

    outcome = pay(ctx, db, form=form, number=number)

    assert outcome.status == PaymentStatus.DECLINED
    assert outcome.message == reason
    assert outcome.receipt is None
    attempt = attempt_of(db, form)
    assert (attempt.status, attempt.decline_reason, attempt.decline_code) == (
        PaymentStatus.DECLINED,
        reason,
        code,
    )
    assert attempt.invoice_id is None
    assert count(db, Invoice) == invoices
    assert [c.status for c in charges_for(sandbox(ctx), form)] == ["failed"]
    declines = db.exec(select(DeclineRecord)).all()
    assert [(d.client_address, d.email) for d in declines] == [(ADDRESS, "pat@example.com")]


def test_does_a_recurring_gift_decline_when_the_card_cannot_be_saved(
    ctx: Flask, db: Session
) -> None:
    form = new_form(ctx)
    subscriptions, invoices = count(db, Subscription), count(db, Invoice)

    outcome = pay(ctx, db, form=form, number="4000000000000002", frequency="monthly")

    assert outcome.status == PaymentStatus.DECLINED
    assert outcome.message == "Your card was declined."
    attempt = attempt_of(db, form)
    assert attempt.decline_reason == "Your card was declined."
    assert attempt.invoice_id is None and attempt.subscription_id is None
    assert charges_for(sandbox(ctx), form) == []  # refused when attached, never charged
    assert (count(db, Subscription), count(db, Invoice)) == (subscriptions, invoices)
    assert count(db, DeclineRecord) == 1


def test_does_a_processing_error_answer_error_without_an_invoice(ctx: Flask, db: Session) -> None:
    form = new_form(ctx)
    invoices = count(db, Invoice)

    outcome = pay(ctx, db, form=form, number="4000000000000119")

    assert outcome.status == PaymentStatus.ERROR
    assert outcome.message == "An error occurred while processing your card. Try again."
    attempt = attempt_of(db, form)
    assert attempt.status == PaymentStatus.ERROR and attempt.invoice_id is None
    assert count(db, Invoice) == invoices
    assert count(db, DeclineRecord) == 0


# -- exactly once ----------------------------------------------------------------------


def test_does_a_replayed_form_token_return_the_same_receipt(ctx: Flask, db: Session) -> None:
    form = new_form(ctx)
    first = pay(ctx, db, form=form)

    again = pay(ctx, db, form=form, number="4000000000000002", amount="99.00")

    assert again.approved
    assert again.receipt == first.receipt
    assert len(charges_for(sandbox(ctx), form)) == 1
    assert len(db.exec(select(Payment).where(Payment.purpose_key == form.purpose_key)).all()) == 1


def test_does_a_double_submission_from_20_threads_charge_once(ctx: Flask, engine: Engine) -> None:
    form = new_form(ctx)
    method = card(sandbox(ctx))
    barrier = threading.Barrier(THREADS)
    outcomes: list[PaymentOutcome] = []
    failures: list[BaseException] = []

    def submit() -> None:
        try:
            with ctx.app_context(), Session(engine, expire_on_commit=False) as session:
                barrier.wait(timeout=30)
                outcomes.append(pay(ctx, session, form=form, method=method))
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert failures == []
    assert len(outcomes) == THREADS
    assert {o.status for o in outcomes} <= {PaymentStatus.APPROVED, PaymentStatus.PENDING}
    assert any(o.approved for o in outcomes)
    assert len(charges_for(sandbox(ctx), form)) == 1
    with Session(engine) as session:
        attempts = session.exec(
            select(Payment).where(Payment.purpose_key == form.purpose_key)
        ).all()
        assert [a.status for a in attempts] == [PaymentStatus.APPROVED]
        paid = session.exec(select(Invoice).where(Invoice.id == attempts[0].invoice_id)).all()
        assert [i.total for i in paid] == [2500]
        payers = session.exec(
            select(CustomerAccount).where(CustomerAccount.email == "pat@example.com")
        ).all()
        assert len(payers) == 1
    receipts = {o.receipt.reference for o in outcomes if o.receipt}
    assert receipts == {f"PAY-{attempts[0].id:06d}"}


def test_does_a_lost_gateway_answer_leave_one_charge(ctx: Flask, db: Session) -> None:
    form = new_form(ctx)
    method = card(sandbox(ctx))
    invoices = count(db, Invoice)
    sandbox(ctx).inject("timeout_after_charge")

    lost = pay(ctx, db, form=form, method=method)
    again = pay(ctx, db, form=form, method=method)

    assert lost.status == again.status == PaymentStatus.UNKNOWN
    assert attempt_of(db, form).status == PaymentStatus.UNKNOWN
    assert [c.status for c in charges_for(sandbox(ctx), form)] == ["succeeded"]
    assert count(db, Invoice) == invoices  # applied only once the reconciler learns the outcome


def test_does_a_late_recurring_approval_keep_the_saved_card_chargeable(
    ctx: Flask, db: Session
) -> None:
    from app.services.reconcile import settle

    form = new_form(ctx)
    method = card(sandbox(ctx))
    sandbox(ctx).inject("timeout_after_charge")
    lost = pay(ctx, db, form=form, method=method, frequency="monthly", amount="15.00")
    assert lost.status == PaymentStatus.UNKNOWN

    status, _emails = settle(db, sandbox(ctx), attempt_of(db, form), now=NOW)

    assert status == PaymentStatus.APPROVED
    attempt = attempt_of(db, form)
    account = db.get(CustomerAccount, attempt.customer_account_id)
    assert account is not None
    (charge,) = charges_for(sandbox(ctx), form)
    # The card was saved to this processor customer; the billing run charges it there.
    assert charge.customer_ref and account.gateway_customer_ref == charge.customer_ref
    subscription = db.get(Subscription, attempt.subscription_id)
    assert subscription is not None and subscription.status == "recurring"
