"""Refunds: never more than paid minus earlier refunds, exactly once, the invoice reopens."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import Engine
from sqlmodel import Session, select

from app.domain.errors import Conflict, NotFound
from app.models import AuditEvent, Invoice, InvoiceStatus, Payment, PaymentKind, PaymentStatus
from app.services import reconcile, refunds
from app.services.form_tokens import FormToken
from app.services.manual_payments import ManualPaymentForm, record_manual_payment
from app.services.refunds import RefundForm, RefundInvalid, RefundOutcome
from tests.services.invoice_helpers import (
    DAY,
    NOW,
    Shop,
    fresh,
    issue,
    make_shop,
    pay_by_card,
    token,
)
from tests.services.payer_helpers import sandbox


@pytest.fixture
def db(app: Flask, engine: Engine) -> Iterator[Session]:
    with app.app_context(), Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def shop(app: Flask, db: Session) -> Shop:
    return make_shop(app, db)


@pytest.fixture
def paid(app: Flask, db: Session, shop: Shop) -> Payment:
    """A $100.00 card payment that paid its invoice in full."""
    invoice = issue(app, db, shop)
    return pay_by_card(app, db, shop, invoice, 10000)


def refund(
    app: Flask,
    db: Session,
    shop: Shop,
    payment: Payment,
    amount: str = "",
    *,
    form_token: FormToken | None = None,
) -> RefundOutcome:
    return refunds.refund_payment(
        db, sandbox(app), shop.admin, payment.id, RefundForm(amount=amount),
        token=form_token or token(app, f"refund:{payment.id}"), now=NOW,
    )  # fmt: skip


def processor_refunded(app: Flask, payment: Payment) -> int:
    [charge] = [c for c in sandbox(app).list_charges() if c.reference == payment.gateway_reference]
    return charge.refunded_amount


def refund_rows(db: Session) -> list[Payment]:
    db.rollback()
    return list(db.exec(select(Payment).where(Payment.kind == PaymentKind.REFUND)).all())


def test_does_a_full_refund_reopen_the_invoice(
    app: Flask, db: Session, shop: Shop, paid: Payment
) -> None:
    outcome = refund(app, db, shop, paid)  # a blank amount refunds all that is left
    assert outcome.approved and outcome.refund.amount == 10000
    assert outcome.refund.parent_payment_id == paid.id
    assert outcome.refund.gateway_reference.startswith("re_")
    assert fresh(db, Payment, paid.id).refunded_amount == 10000
    assert processor_refunded(app, paid) == 10000
    invoice = fresh(db, Invoice, paid.invoice_id)
    assert (invoice.status, invoice.amount_paid, invoice.balance) == (
        InvoiceStatus.CREATED,
        0,
        10000,
    )
    assert invoice.next_dunning_on is None  # a refund does not re-arm the reminders
    event = db.exec(select(AuditEvent).where(AuditEvent.action == "payment.refunded")).one()
    assert (event.subject_id, event.actor_label) == (paid.id, shop.admin.email)


def test_does_a_refund_after_the_due_date_make_the_invoice_overdue(
    app: Flask, db: Session, shop: Shop
) -> None:
    invoice = issue(app, db, shop, due_in=0)
    payment = pay_by_card(app, db, shop, invoice, 10000)
    later = NOW + timedelta(days=3)
    refunds.refund_payment(
        db, sandbox(app), shop.admin, payment.id, RefundForm(amount="10.00"),
        token=token(app, f"refund:{payment.id}"), now=later,
    )  # fmt: skip
    invoice = fresh(db, Invoice, invoice.id)
    assert (invoice.status, invoice.balance) == (InvoiceStatus.OVERDUE, 1000)


def test_is_a_second_refund_limited_by_the_first(
    app: Flask, db: Session, shop: Shop, paid: Payment
) -> None:
    assert refund(app, db, shop, paid, "30.00").approved
    with pytest.raises(RefundInvalid) as refused:
        refund(app, db, shop, paid, "70.01")
    assert list(refused.value.errors) == ["amount"]
    assert "more than the $70.00 that can still be refunded" in refused.value.errors["amount"]
    assert refund(app, db, shop, paid, "70.00").approved
    with pytest.raises(RefundInvalid, match="nothing is left to refund"):
        refund(app, db, shop, paid, "0.01")
    assert [r.amount for r in refund_rows(db)] == [3000, 7000]
    assert fresh(db, Payment, paid.id).refunded_amount == 10000
    assert processor_refunded(app, paid) == 10000


def test_is_an_over_refund_refused_before_the_processor_is_called(
    app: Flask, db: Session, shop: Shop, paid: Payment
) -> None:
    with pytest.raises(RefundInvalid):
        refund(app, db, shop, paid, "100.01")
    assert refund_rows(db) == []
    assert processor_refunded(app, paid) == 0


def test_does_submitting_a_refund_form_twice_refund_once(
    app: Flask, db: Session, shop: Shop, paid: Payment
) -> None:
    form_token = token(app, f"refund:{paid.id}")
    first = refund(app, db, shop, paid, "40.00", form_token=form_token)
    again = refund(app, db, shop, paid, "40.00", form_token=form_token)
    assert (first.created, again.created) == (True, False)
    assert again.refund.id == first.refund.id and again.approved
    assert fresh(db, Payment, paid.id).refunded_amount == 4000
    assert processor_refunded(app, paid) == 4000


def _at_once(app: Flask, engine: Engine, calls: list) -> tuple[list, list[BaseException]]:
    barrier = threading.Barrier(len(calls))
    results: list = []
    errors: list[BaseException] = []

    def run(call) -> None:  # noqa: ANN001
        try:
            with app.app_context(), Session(engine, expire_on_commit=False) as session:
                barrier.wait(timeout=30)
                results.append(call(session))
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results, errors


def test_do_simultaneous_submissions_of_one_refund_form_refund_once(
    app: Flask, engine: Engine, db: Session, shop: Shop, paid: Payment
) -> None:
    form_token = token(app, f"refund:{paid.id}")
    calls = [lambda s: refund(app, s, shop, paid, "25.00", form_token=form_token)] * 3
    results, errors = _at_once(app, engine, calls)
    assert errors == []
    assert sorted(r.created for r in results) == [False, False, True]
    assert all(r.approved for r in results)
    assert fresh(db, Payment, paid.id).refunded_amount == 2500
    assert processor_refunded(app, paid) == 2500


def test_do_two_simultaneous_full_refunds_refund_once(
    app: Flask, engine: Engine, db: Session, shop: Shop, paid: Payment
) -> None:
    calls = [lambda s: refund(app, s, shop, paid, "100.00")] * 2
    results, errors = _at_once(app, engine, calls)
    assert [r.approved for r in results] == [True]
    assert len(errors) == 1 and isinstance(errors[0], RefundInvalid), errors
    assert processor_refunded(app, paid) == 10000
    assert fresh(db, Payment, paid.id).refunded_amount == 10000


def test_is_a_lost_refund_answer_settled_by_the_reconciler_once(
    app: Flask, db: Session, shop: Shop, paid: Payment
) -> None:
    sandbox(app).inject("timeout_after_charge", operation="refund")
    outcome = refund(app, db, shop, paid, "60.00")
    assert outcome.status == PaymentStatus.UNKNOWN
    assert fresh(db, Payment, paid.id).refunded_amount == 0
    with pytest.raises(RefundInvalid):  # the unknown refund still counts against the limit
        refund(app, db, shop, paid, "40.01")

    [attempt] = reconcile.open_attempts(db, now=NOW)
    status, _ = reconcile.settle(db, sandbox(app), attempt, now=NOW)
    assert status == PaymentStatus.APPROVED
    assert reconcile.open_attempts(db, now=NOW) == []
    assert fresh(db, Payment, paid.id).refunded_amount == 6000
    assert fresh(db, Invoice, paid.invoice_id).amount_paid == 4000
    assert processor_refunded(app, paid) == 6000


def test_is_a_declined_refund_without_effect(
    app: Flask, db: Session, shop: Shop, paid: Payment
) -> None:
    sandbox(app).inject("decline", operation="refund")
    outcome = refund(app, db, shop, paid, "10.00")
    assert outcome.status == PaymentStatus.DECLINED and "declined" in outcome.message
    assert fresh(db, Payment, paid.id).refunded_amount == 0
    assert fresh(db, Invoice, paid.invoice_id).status == InvoiceStatus.PAID
    assert refund(app, db, shop, paid, "100.00").approved  # the declined one holds nothing back


def test_can_another_partner_refund_a_payment(
    app: Flask, db: Session, shop: Shop, paid: Payment
) -> None:
    other = make_shop(app, db, "other")
    with pytest.raises(NotFound):
        refunds.refund_payment(
            db, sandbox(app), other.admin, paid.id, RefundForm(),
            token=token(app, f"refund:{paid.id}"), now=NOW,
        )  # fmt: skip
    assert processor_refunded(app, paid) == 0


# -- manual payments are refunded by hand ----------------------------------------------------


@pytest.fixture
def check(app: Flask, db: Session, shop: Shop) -> Payment:
    invoice = issue(app, db, shop)
    form = ManualPaymentForm(amount="100.00", reference="1042", received_on=DAY.isoformat())
    return record_manual_payment(
        db, shop.admin, invoice.id, form,
        token=token(app, f"manual-payment:{invoice.id}"), as_of=DAY, now=NOW,
    ).payment  # fmt: skip


def manual_refund(
    app: Flask, db: Session, shop: Shop, payment: Payment, amount: str, **kw: object
) -> RefundOutcome:
    form = RefundForm(amount=amount, refunded_on=DAY.isoformat(), reference="Check #9")
    return refunds.record_manual_refund(
        db, shop.admin, payment.id, form,
        token=kw.get("form_token") or token(app, f"refund:{payment.id}"), as_of=DAY, now=NOW,  # type: ignore[arg-type]
    )  # fmt: skip


def test_is_a_manual_payment_refunded_by_record(
    app: Flask, db: Session, shop: Shop, check: Payment
) -> None:
    outcome = manual_refund(app, db, shop, check, "25.00")
    assert outcome.approved
    assert (outcome.refund.method, outcome.refund.received_on) == ("manual", DAY)
    assert fresh(db, Payment, check.id).refunded_amount == 2500
    invoice = fresh(db, Invoice, check.invoice_id)
    assert (invoice.status, invoice.balance) == (InvoiceStatus.CREATED, 2500)
    with pytest.raises(RefundInvalid, match="more than the \\$75.00"):
        manual_refund(app, db, shop, check, "75.01")
    form_token = token(app, f"refund:{check.id}")
    manual_refund(app, db, shop, check, "75.00", form_token=form_token)
    assert not manual_refund(app, db, shop, check, "75.00", form_token=form_token).created
    assert fresh(db, Payment, check.id).refunded_amount == 10000


def test_is_each_kind_of_payment_refunded_its_own_way(
    app: Flask, db: Session, shop: Shop, check: Payment, paid: Payment
) -> None:
    with pytest.raises(Conflict):
        refund(app, db, shop, check, "1.00")
    with pytest.raises(Conflict):
        manual_refund(app, db, shop, paid, "1.00")
