"""Manual payments (check, cash, bank transfer): full or partial, never over, counted once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import Engine
from sqlmodel import Session, func, select

from app.domain.errors import NotFound
from app.domain.schedule import SubscriptionStatus
from app.models import (
    AccountStatus,
    CustomerAccount,
    Invoice,
    InvoiceStatus,
    OutboxMessage,
    Payment,
    PaymentStatus,
    Subscription,
)
from app.services.manual_payments import (
    ManualPaymentForm,
    ManualPaymentInvalid,
    RecordedPayment,
    record_manual_payment,
)
from app.services.service_stop import stop_service
from tests.services.billing_helpers import add_subscription
from tests.services.invoice_helpers import DAY, NOW, Shop, fresh, issue, make_shop, token


@pytest.fixture
def db(app: Flask, engine: Engine) -> Iterator[Session]:
    with app.app_context(), Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def shop(app: Flask, db: Session) -> Shop:
    return make_shop(app, db)


def record(
    app: Flask,
    db: Session,
    shop: Shop,
    invoice: Invoice,
    amount: str,
    *,
    kind: str = "check",
    reference: str = "1042",
    received_on: str = "",
    form_token=None,  # noqa: ANN001
) -> RecordedPayment:
    form = ManualPaymentForm(
        kind=kind, amount=amount, reference=reference, received_on=received_on or DAY.isoformat()
    )
    return record_manual_payment(
        db, shop.admin, invoice.id, form,
        token=form_token or token(app, f"manual-payment:{invoice.id}"), as_of=DAY, now=NOW,
    )  # fmt: skip


def payments_count(db: Session) -> int:
    db.rollback()
    return db.exec(select(func.count()).select_from(Payment)).one()


def test_does_a_partial_check_leave_the_rest_due(app: Flask, db: Session, shop: Shop) -> None:
    invoice = issue(app, db, shop)  # $100.00
    recorded = record(app, db, shop, invoice, "40.00")
    invoice = fresh(db, Invoice, invoice.id)
    assert (invoice.status, invoice.amount_paid, invoice.balance) == (
        InvoiceStatus.CREATED,
        4000,
        6000,
    )
    payment = recorded.payment
    assert (payment.kind, payment.method, payment.status) == ("check", "manual", "approved")
    assert (payment.reference, payment.received_on, payment.amount) == ("1042", DAY, 4000)
    assert invoice.next_dunning_on is not None  # still owed: reminders continue


def test_does_paying_the_rest_in_cash_mark_the_invoice_paid(
    app: Flask, db: Session, shop: Shop
) -> None:
    invoice = issue(app, db, shop)
    record(app, db, shop, invoice, "40.00")
    record(app, db, shop, invoice, "60.00", kind="cash", reference="")
    invoice = fresh(db, Invoice, invoice.id)
    assert (invoice.status, invoice.balance, invoice.next_dunning_on) == (
        InvoiceStatus.PAID,
        0,
        None,
    )


def test_does_a_bank_transfer_write_a_receipt_with_its_label(
    app: Flask, db: Session, shop: Shop
) -> None:
    invoice = issue(app, db, shop)
    recorded = record(app, db, shop, invoice, "100.00", kind="bank_transfer", reference="TR-77")
    [receipt] = db.exec(select(OutboxMessage).where(OutboxMessage.kind == "receipt")).all()
    assert recorded.email_ids == [receipt.id]
    assert receipt.to_address == shop.account.email
    assert "Bank transfer (TR-77)" in receipt.text_body and "$100.00" in receipt.text_body


def test_is_an_overpayment_refused_naming_the_amount_field(
    app: Flask, db: Session, shop: Shop
) -> None:
    invoice = issue(app, db, shop)
    record(app, db, shop, invoice, "30.00")
    with pytest.raises(ManualPaymentInvalid) as refused:
        record(app, db, shop, invoice, "70.01")
    assert list(refused.value.errors) == ["amount"]
    assert refused.value.errors["amount"].startswith("Amount: $70.01 is more than the $70.00")
    assert fresh(db, Invoice, invoice.id).amount_paid == 3000
    assert payments_count(db) == 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"kind": "card"}, "kind"),
        ({"amount": "0"}, "amount"),
        ({"amount": "-5"}, "amount"),
        ({"kind": "check", "reference": ""}, "reference"),
        ({"received_on": "yesterday"}, "received_on"),
        ({"received_on": (DAY + timedelta(days=1)).isoformat()}, "received_on"),
    ],
)
def test_is_a_bad_manual_payment_refused_with_the_field_named(
    app: Flask, db: Session, shop: Shop, changes: dict[str, str], field: str
) -> None:
    invoice = issue(app, db, shop)
    args = {"amount": "10.00", **changes}
    with pytest.raises(ManualPaymentInvalid) as refused:
        record(app, db, shop, invoice, **args)
    assert field in refused.value.errors
    assert payments_count(db) == 0


def test_is_a_paid_or_canceled_invoice_refused(app: Flask, db: Session, shop: Shop) -> None:
    from app.services.invoice_admin import cancel_invoice

    paid = issue(app, db, shop)
    record(app, db, shop, paid, "100.00")
    canceled = issue(app, db, shop)
    cancel_invoice(db, shop.admin, canceled.id, as_of=DAY)
    for invoice in (paid, canceled):
        with pytest.raises(ManualPaymentInvalid, match="nothing is left to pay"):
            record(app, db, shop, invoice, "1.00")


def test_does_submitting_the_same_form_twice_count_once(
    app: Flask, db: Session, shop: Shop
) -> None:
    invoice = issue(app, db, shop)
    form_token = token(app, f"manual-payment:{invoice.id}")
    first = record(app, db, shop, invoice, "25.00", form_token=form_token)
    again = record(app, db, shop, invoice, "25.00", form_token=form_token)
    assert (first.created, again.created) == (True, False)
    assert again.payment.id == first.payment.id and again.email_ids == []
    assert fresh(db, Invoice, invoice.id).amount_paid == 2500
    assert payments_count(db) == 1


def test_do_simultaneous_submissions_of_one_form_count_once(
    app: Flask, engine: Engine, db: Session, shop: Shop
) -> None:
    invoice = issue(app, db, shop)
    form_token = token(app, f"manual-payment:{invoice.id}")
    barrier = threading.Barrier(3)
    results: list[RecordedPayment] = []
    errors: list[BaseException] = []

    def submit() -> None:
        try:
            with app.app_context(), Session(engine, expire_on_commit=False) as session:
                barrier.wait(timeout=30)
                results.append(record(app, session, shop, invoice, "25.00", form_token=form_token))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(r.created for r in results) == [False, False, True]
    assert len({r.payment.id for r in results}) == 1
    assert fresh(db, Invoice, invoice.id).amount_paid == 2500


def test_can_another_partner_record_a_payment(app: Flask, db: Session, shop: Shop) -> None:
    invoice = issue(app, db, shop)
    other = make_shop(app, db, "other")
    form = ManualPaymentForm(amount="1.00", reference="1", received_on=DAY.isoformat())
    with pytest.raises(NotFound):
        record_manual_payment(
            db, other.admin, invoice.id, form,
            token=token(app, f"manual-payment:{invoice.id}"), as_of=DAY, now=NOW,
        )  # fmt: skip


def test_does_paying_the_last_overdue_invoice_by_check_restore_service(
    app: Flask, db: Session, shop: Shop
) -> None:
    invoice = issue(app, db, shop, due_in=0)
    sub = add_subscription(
        db, shop.account, shop.method, frequency="monthly", start_date=DAY - timedelta(days=60)
    )
    later = DAY + timedelta(days=40)
    stop_service(db, shop.account.id, invoice=invoice, days=35, as_of=later)
    db.commit()
    form = ManualPaymentForm(amount="100.00", reference="2001", received_on=later.isoformat())
    recorded = record_manual_payment(
        db, shop.admin, invoice.id, form,
        token=token(app, f"manual-payment:{invoice.id}"), as_of=later, now=NOW,
    )  # fmt: skip
    account = fresh(db, CustomerAccount, shop.account.id)
    assert (account.status, account.service_stopped_on) == (AccountStatus.ACTIVE, None)
    assert fresh(db, Subscription, sub.id).status == SubscriptionStatus.RECURRING
    kinds = db.exec(
        select(OutboxMessage.kind).where(OutboxMessage.id.in_(recorded.email_ids))  # type: ignore[union-attr]
    ).all()
    assert sorted(set(kinds)) == ["receipt", "service_restored"]
    assert recorded.payment.status == PaymentStatus.APPROVED
