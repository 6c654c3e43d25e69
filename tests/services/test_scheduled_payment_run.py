"""The billing run charges scheduled payments on their day, exactly once: approved,
declined, settled before the day, a smaller balance, two runs at once, a crashed worker,
and a lost answer settled by the reconciler."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import Engine
from sqlmodel import Session, select

from app.clock import utcnow
from app.gateway.sandbox import SandboxGateway
from app.models import (
    BillingRun,
    Invoice,
    OutboxMessage,
    Payment,
    PaymentMethod,
    ScheduledPayment,
)
from app.services import payments
from app.services.billing_run import start_run
from app.services.reconcile import open_attempts, settle, verify
from app.services.scheduled_payments import (
    charge_due_scheduled_payments,
    finish_scheduled_payment,
)
from tests.services.billing_helpers import (
    DECLINES_WHEN_CHARGED,
    assert_ledger_matches_processor,
    save_card,
)
from tests.services.invoice_helpers import fresh, pay_by_card
from tests.services.scheduled_helpers import (
    DAY,
    NOW,
    Customer,
    charges_of,
    make_customer_user,
    open_invoice,
    sandbox,
    schedule,
)

PAY_ON = DAY + timedelta(days=10)
ON_THE_DAY = NOW + timedelta(days=10)


@pytest.fixture
def ctx(app: Flask) -> Iterator[Flask]:
    with app.app_context():
        yield app


@pytest.fixture
def db(ctx: Flask, engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def casey(ctx: Flask, db: Session) -> Customer:
    return make_customer_user(ctx, db)


@pytest.fixture
def invoice(ctx: Flask, db: Session, casey: Customer) -> Invoice:
    return open_invoice(ctx, db, casey)


@pytest.fixture
def row(ctx: Flask, db: Session, casey: Customer, invoice: Invoice) -> ScheduledPayment:
    """The whole $100.00 invoice, scheduled for PAY_ON with the customer's Visa."""
    return schedule(ctx, db, casey, invoice, pay_on=PAY_ON).scheduled


def run(app: Flask, db: Session, casey: Customer, day, *, gateway=None, now=ON_THE_DAY):  # noqa: ANN001, ANN201
    """The scheduled-payment part of the partner's billing run of ``day``."""
    return charge_due_scheduled_payments(
        db, gateway or sandbox(app), partner_id=casey.shop.partner.id, as_of=day, now=now,  # type: ignore[arg-type]
        base_url="http://localhost",
    )  # fmt: skip


def emails(db: Session, kind: str) -> list[OutboxMessage]:
    db.rollback()
    return list(db.exec(select(OutboxMessage).where(OutboxMessage.kind == kind)).all())


def attempts(db: Session, row: ScheduledPayment) -> list[Payment]:
    db.rollback()
    return list(db.exec(select(Payment).where(Payment.purpose_key == f"sched:{row.id}")).all())


def assert_paid_once(app: Flask, db: Session, row: ScheduledPayment, invoice: Invoice) -> None:
    paid = fresh(db, ScheduledPayment, row.id)
    [attempt] = attempts(db, row)
    assert (paid.status, paid.payment_id) == ("paid", attempt.id)
    assert (attempt.status, attempt.amount, attempt.invoice_id) == ("approved", 10000, invoice.id)
    settled = fresh(db, Invoice, invoice.id)
    assert (settled.status, settled.amount_paid) == ("paid", 10000)
    assert [c.status for c in charges_of(sandbox(app), row)] == ["succeeded"]
    assert_ledger_matches_processor(db, sandbox(app))


# -- which rows a run charges ----------------------------------------------------------


def test_does_the_run_charge_only_payments_due_on_or_before_its_day(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice, row: ScheduledPayment
) -> None:
    later_invoice = open_invoice(ctx, db, casey)
    later = schedule(ctx, db, casey, later_invoice, pay_on=PAY_ON + timedelta(days=1)).scheduled

    assert run(ctx, db, casey, PAY_ON - timedelta(days=1)) == {}
    assert fresh(db, ScheduledPayment, row.id).status == "scheduled"

    tally = run(ctx, db, casey, PAY_ON)

    assert tally == {"charged": 1}
    assert fresh(db, ScheduledPayment, row.id).status == "paid"
    assert fresh(db, ScheduledPayment, later.id).status == "scheduled"
    assert charges_of(sandbox(ctx), later) == [] and attempts(db, later) == []


def test_does_a_run_catch_up_a_payment_whose_day_was_missed(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice, row: ScheduledPayment
) -> None:
    assert run(ctx, db, casey, PAY_ON + timedelta(days=3)) == {"charged": 1}

    assert_paid_once(ctx, db, row, invoice)


# -- outcomes --------------------------------------------------------------------------


def test_does_an_approved_payment_pay_the_invoice_and_send_a_receipt(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice, row: ScheduledPayment
) -> None:
    run(ctx, db, casey, PAY_ON)

    assert_paid_once(ctx, db, row, invoice)
    [attempt] = attempts(db, row)
    assert attempt.detail["source"] == "scheduled_payment"
    assert attempt.detail["scheduled_payment_id"] == row.id
    assert (attempt.payment_method_id, attempt.customer_account_id) == (
        casey.method.id, casey.shop.account.id,
    )  # fmt: skip
    [receipt] = emails(db, "receipt")
    assert receipt.to_address == casey.shop.account.email
    assert emails(db, "scheduled_payment_failed") == []


def test_does_a_declined_payment_fail_with_an_email_and_leave_the_invoice_open(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice
) -> None:
    declining = save_card(db, sandbox(ctx), casey.shop.account, DECLINES_WHEN_CHARGED)
    row = schedule(ctx, db, casey, invoice, pay_on=PAY_ON, method=declining).scheduled

    assert run(ctx, db, casey, PAY_ON) == {"declined": 1}

    failed = fresh(db, ScheduledPayment, row.id)
    assert (failed.status, failed.failure_reason) == ("failed", "Your card was declined.")
    assert failed.payment_id is None
    still_open = fresh(db, Invoice, invoice.id)
    assert (still_open.status, still_open.amount_paid) == ("created", 0)
    [email] = emails(db, "scheduled_payment_failed")
    assert email.to_address == casey.shop.account.email
    assert "Your card was declined." in email.text_body
    assert f"http://localhost/portal/invoices/{invoice.id}" in email.text_body
    assert emails(db, "receipt") == []
    assert [a.status for a in attempts(db, row)] == ["declined"]
    assert run(ctx, db, casey, PAY_ON + timedelta(days=1)) == {}  # never charged again


def test_is_a_payment_of_an_invoice_settled_before_its_day_canceled_without_a_charge(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice, row: ScheduledPayment
) -> None:
    pay_by_card(ctx, db, casey.shop, invoice, invoice.total)

    assert run(ctx, db, casey, PAY_ON) == {"canceled": 1}

    canceled = fresh(db, ScheduledPayment, row.id)
    assert canceled.status == "canceled"
    assert canceled.failure_reason == "The invoice was settled before this date"
    assert canceled.canceled_at == ON_THE_DAY
    assert charges_of(sandbox(ctx), row) == [] and attempts(db, row) == []


def test_is_only_the_balance_charged_when_it_shrank_since(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice, row: ScheduledPayment
) -> None:
    casey.shop.partner.allow_partial_payments = True
    db.add(casey.shop.partner)
    db.commit()
    pay_by_card(ctx, db, casey.shop, invoice, 3000)

    run(ctx, db, casey, PAY_ON)

    [attempt] = attempts(db, row)
    assert (attempt.status, attempt.amount) == ("approved", 7000)
    assert [c.amount for c in charges_of(sandbox(ctx), row)] == [7000]
    assert fresh(db, Invoice, invoice.id).status == "paid"
    assert fresh(db, Invoice, invoice.id).amount_paid == 10000


def test_is_the_default_method_charged_when_the_chosen_one_was_removed(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice
) -> None:
    spare = save_card(db, sandbox(ctx), casey.shop.account)
    row = schedule(ctx, db, casey, invoice, pay_on=PAY_ON, method=spare).scheduled
    row = fresh(db, ScheduledPayment, row.id)
    row.payment_method_id = None  # what removing the method leaves behind
    db.add(row)
    db.delete(db.get(PaymentMethod, spare.id))
    db.commit()

    assert run(ctx, db, casey, PAY_ON) == {"charged": 1}

    [attempt] = attempts(db, row)
    assert attempt.payment_method_id == casey.method.id


# -- exactly once ----------------------------------------------------------------------


def test_is_a_payment_charged_once_when_its_day_is_run_twice(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice, row: ScheduledPayment
) -> None:
    assert run(ctx, db, casey, PAY_ON) == {"charged": 1}
    assert run(ctx, db, casey, PAY_ON) == {}
    assert run(ctx, db, casey, PAY_ON + timedelta(days=1)) == {}

    assert_paid_once(ctx, db, row, invoice)
    assert len(emails(db, "receipt")) == 1


def test_do_two_runs_at_once_charge_a_payment_once(
    ctx: Flask, engine: Engine, db: Session, casey: Customer
) -> None:
    gateway = SandboxGateway(engine, latency_ms=20)  # widens the window between claim and answer
    invoices = [open_invoice(ctx, db, casey) for _ in range(6)]
    rows = [schedule(ctx, db, casey, inv, pay_on=PAY_ON).scheduled for inv in invoices]
    start = threading.Barrier(2)
    tallies: list[dict[str, int]] = []
    failures: list[BaseException] = []

    def one_run() -> None:
        try:
            with ctx.app_context(), Session(engine, expire_on_commit=False) as session:
                start.wait(timeout=10)
                tallies.append(dict(run(ctx, session, casey, PAY_ON, gateway=gateway)))
        except BaseException as exc:  # reported in the main thread
            failures.append(exc)

    threads = [threading.Thread(target=one_run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert failures == []
    assert sum(t.get("charged", 0) for t in tallies) == 6
    for row in rows:
        assert len(charges_of(gateway, row)) == 1
        assert fresh(db, ScheduledPayment, row.id).status == "paid"
    assert_ledger_matches_processor(db, gateway)


class CrashBeforeCharging(SandboxGateway):
    """A worker killed after the attempt was committed, before the processor heard of it."""

    def charge(self, **kwargs):  # noqa: ANN003, ANN201
        raise SystemExit("worker killed")


def test_does_a_run_after_a_crash_send_the_committed_attempt_once_with_its_own_key(
    ctx: Flask, engine: Engine, db: Session, casey: Customer, invoice: Invoice,
    row: ScheduledPayment,
) -> None:  # fmt: skip
    with pytest.raises(SystemExit):
        run(ctx, db, casey, PAY_ON, gateway=CrashBeforeCharging(engine))
    db.rollback()
    assert fresh(db, ScheduledPayment, row.id).status == "processing"
    [attempt] = attempts(db, row)
    assert attempt.status == "pending" and charges_of(sandbox(ctx), row) == []

    assert run(ctx, db, casey, PAY_ON) == {"skipped": 1}  # not stale yet: maybe still running
    later = utcnow() + timedelta(minutes=10)  # attempts are stamped with the real clock
    assert run(ctx, db, casey, PAY_ON, now=later) == {"charged": 1}
    assert run(ctx, db, casey, PAY_ON, now=later) == {}

    assert_paid_once(ctx, db, row, invoice)
    assert attempts(db, row)[0].idempotency_key == attempt.idempotency_key


def test_is_a_lost_answer_settled_by_the_reconciler_exactly_once(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice, row: ScheduledPayment
) -> None:
    sandbox(ctx).inject("timeout_after_charge")

    assert run(ctx, db, casey, PAY_ON) == {"unknown": 1}

    assert fresh(db, ScheduledPayment, row.id).status == "processing"
    [attempt] = attempts(db, row)
    assert attempt.status == "unknown"
    assert fresh(db, Invoice, invoice.id).status == "created"
    assert [c.status for c in charges_of(sandbox(ctx), row)] == ["succeeded"]  # money moved
    assert [d.note for d in verify(db, sandbox(ctx))] == ["approved there, not here"]

    later = utcnow() + timedelta(minutes=10)
    assert [a.id for a in open_attempts(db, now=later)] == [attempt.id]
    status, email_ids = settle(db, sandbox(ctx), attempt, now=later)
    assert status == "paid" and len(email_ids) == 1
    assert settle(db, sandbox(ctx), fresh(db, Payment, attempt.id), now=later)[1] == []

    assert run(ctx, db, casey, PAY_ON + timedelta(days=1)) == {}
    assert_paid_once(ctx, db, row, invoice)
    assert len(emails(db, "receipt")) == 1
    assert open_attempts(db, now=later) == []


def test_is_finishing_the_same_attempt_twice_a_no_op(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice, row: ScheduledPayment
) -> None:
    run(ctx, db, casey, PAY_ON)
    [attempt] = attempts(db, row)
    answer = payments.ask_gateway(sandbox(ctx), attempt)
    assert answer is not None and answer.approved

    again = finish_scheduled_payment(db, attempt, answer, now=ON_THE_DAY)

    assert again.status == "skipped" and again.email_ids == ()
    assert_paid_once(ctx, db, row, invoice)
    assert len(emails(db, "receipt")) == 1


def test_are_the_charges_counted_into_the_days_billing_run(
    ctx: Flask, db: Session, casey: Customer, invoice: Invoice, row: ScheduledPayment
) -> None:
    declining = save_card(db, sandbox(ctx), casey.shop.account, DECLINES_WHEN_CHARGED)
    other = open_invoice(ctx, db, casey)
    schedule(ctx, db, casey, other, pay_on=PAY_ON, method=declining)
    plan = start_run(db, partner_id=casey.shop.partner.id, run_date=PAY_ON)  # type: ignore[arg-type]

    run(ctx, db, casey, PAY_ON)

    counted = fresh(db, BillingRun, plan.run.id)
    assert (counted.charged, counted.declined, counted.processed) == (1, 1, 0)
    assert counted.totals == {"USD": 10000}


def test_does_the_reconciler_fail_a_payment_the_processor_never_received(
    ctx: Flask, engine: Engine, db: Session, casey: Customer, invoice: Invoice,
    row: ScheduledPayment,
) -> None:  # fmt: skip
    with pytest.raises(SystemExit):
        run(ctx, db, casey, PAY_ON, gateway=CrashBeforeCharging(engine))
    db.rollback()
    [attempt] = attempts(db, row)

    later = utcnow() + timedelta(minutes=10)
    status, email_ids = settle(db, sandbox(ctx), attempt, now=later)

    failed = fresh(db, ScheduledPayment, row.id)
    assert failed.status == "failed" and "no record" in failed.failure_reason
    assert len(email_ids) == 1 and len(emails(db, "scheduled_payment_failed")) == 1
    assert fresh(db, Invoice, invoice.id).status == "created"  # still open, still payable
    assert charges_of(sandbox(ctx), row) == []
    assert run(ctx, db, casey, PAY_ON + timedelta(days=1)) == {}  # not tried again
