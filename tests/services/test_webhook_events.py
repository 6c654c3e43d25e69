"""Processor events: stored once, applied once, in the right order (ADR 0018).

Payments are made through the pay-link service against the sandbox processor (the
boundary fake); events are what the processor would send about them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import Engine, update
from sqlmodel import Session, select

from app.models import Invoice, InvoiceStatus, Payment, PaymentStatus, ProcessorEvent
from app.services import payments, refunds, webhooks
from app.services.refunds import RefundForm
from tests.services.invoice_helpers import Shop, fresh, issue, make_shop, pay_by_card, token
from tests.services.payer_helpers import NOW, sandbox
from tests.services.webhook_helpers import (
    CREATED,
    charge_object,
    event,
    events,
    lost_payment,
    processor_charge,
    receipts,
    refund_rows,
)

THREADS = 10


@pytest.fixture
def db(app: Flask, engine: Engine) -> Iterator[Session]:
    with app.app_context(), Session(engine, expire_on_commit=False) as session:
        yield session


@pytest.fixture
def shop(app: Flask, db: Session) -> Shop:
    return make_shop(app, db)


@pytest.fixture
def invoice(app: Flask, db: Session, shop: Shop) -> Invoice:
    """A $100.00 invoice."""
    return issue(app, db, shop)


def receive(app: Flask, db: Session, evt, now=NOW) -> webhooks.Delivery:  # noqa: ANN001
    return webhooks.receive_event(db, sandbox(app), evt, now=now)


# -- charges ---------------------------------------------------------------------------


def test_does_a_success_event_settle_a_lost_answer_with_its_effects_once(
    app: Flask, db: Session, shop: Shop, invoice: Invoice
) -> None:
    attempt = lost_payment(app, db, shop, invoice, 10000)
    evt = event("charge.succeeded", charge_object(processor_charge(app, attempt)))

    first = receive(app, db, evt)
    again = receive(app, db, evt)

    assert (first.outcome, first.duplicate, len(first.email_ids)) == ("applied", False, 1)
    assert (again.outcome, again.duplicate, again.email_ids) == ("applied", True, [])
    paid = fresh(db, Payment, attempt.id)
    assert paid.status == PaymentStatus.APPROVED
    assert paid.gateway_reference == processor_charge(app, attempt).reference
    assert fresh(db, Invoice, invoice.id).status == InvoiceStatus.PAID
    assert receipts(db, attempt) == 1
    [row] = events(db)
    assert (row.outcome, row.object_ref, row.event_created) == (
        "applied",
        paid.gateway_reference,
        CREATED,
    )
    assert row.applied_at is not None


def test_is_the_same_event_delivered_ten_times_at_once_applied_once(
    app: Flask, db: Session, engine: Engine, shop: Shop, invoice: Invoice
) -> None:
    attempt = lost_payment(app, db, shop, invoice, 10000)
    evt = event("payment_intent.succeeded", charge_object(processor_charge(app, attempt)))
    start = threading.Barrier(THREADS)
    deliveries: list[webhooks.Delivery] = []
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            with app.app_context(), Session(engine, expire_on_commit=False) as own:
                start.wait()
                deliveries.append(webhooks.receive_event(own, sandbox(app), evt, now=NOW))
        except BaseException as exc:  # reported below, with the thread's error
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert sorted(d.duplicate for d in deliveries) == [False] + [True] * (THREADS - 1)
    assert len(events(db)) == 1
    assert fresh(db, Payment, attempt.id).status == PaymentStatus.APPROVED
    assert fresh(db, Invoice, invoice.id).amount_paid == 10000
    assert receipts(db, attempt) == 1


def test_does_a_failure_event_decline_an_attempt_whose_worker_died(
    app: Flask, db: Session, shop: Shop, invoice: Invoice
) -> None:
    spec = payments.AttemptSpec(
        partner_id=shop.partner.id,  # type: ignore[arg-type]
        purpose_key=f"inv:{invoice.id}:1",
        amount=10000,
        currency="USD",
        method="card",
        customer_account_id=shop.account.id,
        invoice_id=invoice.id,
        gateway="sandbox",
        detail={"source": "paylink", "payer_email": shop.account.email},
    )
    attempt, _ = payments.open_attempt(db, spec)
    failed = {
        "id": "ch_sbx_declined",
        "object": "charge",
        "amount": 10000,
        "currency": "usd",
        "status": "failed",
        "failure_code": "insufficient_funds",
        "failure_message": "Your card has insufficient funds.",
        "metadata": {"attempt_id": str(attempt.id), "purpose_key": attempt.purpose_key},
    }

    delivery = receive(app, db, event("charge.failed", failed))

    assert delivery.outcome == "applied"
    declined = fresh(db, Payment, attempt.id)
    assert (declined.status, declined.decline_code) == (
        PaymentStatus.DECLINED,
        "insufficient_funds",
    )
    assert declined.decline_reason == "Your card has insufficient funds."
    assert fresh(db, Invoice, invoice.id).status == InvoiceStatus.CREATED


def test_does_an_older_failure_arriving_after_the_success_leave_the_payment_paid(
    app: Flask, db: Session, shop: Shop, invoice: Invoice
) -> None:
    attempt = lost_payment(app, db, shop, invoice, 10000)
    charge = charge_object(processor_charge(app, attempt))
    receive(app, db, event("charge.succeeded", charge, created=CREATED + 5))

    late = receive(app, db, event("charge.failed", {**charge, "status": "failed"}, created=CREATED))

    assert late.outcome == "stale"
    assert fresh(db, Payment, attempt.id).status == PaymentStatus.APPROVED
    assert fresh(db, Invoice, invoice.id).status == InvoiceStatus.PAID
    assert receipts(db, attempt) == 1


def test_does_a_failure_event_leave_a_payment_approved_in_time_alone(
    app: Flask, db: Session, shop: Shop, invoice: Invoice
) -> None:
    paid = pay_by_card(app, db, shop, invoice, 10000)
    charge = charge_object(processor_charge(app, paid), status="failed")

    delivery = receive(app, db, event("charge.failed", charge))

    assert delivery.outcome == "stale"
    assert fresh(db, Payment, paid.id).status == PaymentStatus.APPROVED


def test_are_events_about_other_objects_and_types_stored_without_effect(
    app: Flask, db: Session, shop: Shop, invoice: Invoice
) -> None:
    paid = pay_by_card(app, db, shop, invoice, 10000)
    dispute = {"id": "dp_1", "object": "dispute", "charge": paid.gateway_reference, "amount": 100}
    stranger = {"id": "ch_not_ours", "object": "charge", "amount": 500, "currency": "usd"}

    outcomes = [
        receive(app, db, event("charge.dispute.created", dispute)).outcome,
        receive(app, db, event("charge.succeeded", stranger)).outcome,
    ]

    assert outcomes == ["ignored", "unknown_object"]
    assert [row.outcome for row in events(db)] == ["ignored", "unknown_object"]
    assert fresh(db, Payment, paid.id).refunded_amount == 0


# -- refunds ---------------------------------------------------------------------------


def test_is_a_refund_made_at_the_processor_recorded_once(
    app: Flask, db: Session, shop: Shop, invoice: Invoice
) -> None:
    paid = pay_by_card(app, db, shop, invoice, 10000)
    refunded = sandbox(app).refund(
        reference=paid.gateway_reference, amount=4000, idempotency_key="dashboard-refund-1"
    )
    assert refunded.approved
    charge = charge_object(processor_charge(app, paid))

    first = receive(app, db, event("charge.refunded", charge))
    # The same total in another event (the processor's retry, or a second event type).
    second = receive(app, db, event("charge.refunded", charge, created=CREATED + 1))

    assert (first.outcome, second.outcome) == ("applied", "noop")
    [row] = refund_rows(db, paid)
    assert (row.status, row.amount, row.gateway_reference) == (PaymentStatus.APPROVED, 4000, "")
    assert fresh(db, Payment, paid.id).refunded_amount == 4000
    reopened = fresh(db, Invoice, invoice.id)
    assert (reopened.status, reopened.amount_paid) == (InvoiceStatus.CREATED, 6000)


def test_are_ten_refund_events_with_the_same_total_recorded_once(
    app: Flask, db: Session, engine: Engine, shop: Shop, invoice: Invoice
) -> None:
    paid = pay_by_card(app, db, shop, invoice, 10000)
    sandbox(app).refund(reference=paid.gateway_reference, amount=10000, idempotency_key="dash-2")
    charge = charge_object(processor_charge(app, paid))
    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def deliver(n: int) -> None:
        try:
            with app.app_context(), Session(engine, expire_on_commit=False) as own:
                start.wait()
                evt = event("charge.refunded", charge, event_id=f"evt_refund_{n}")
                webhooks.receive_event(own, sandbox(app), evt, now=NOW)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert [r.amount for r in refund_rows(db, paid)] == [10000]
    assert fresh(db, Payment, paid.id).refunded_amount == 10000
    assert sorted(row.outcome for row in events(db)) == ["applied"] + ["noop"] * (THREADS - 1)


def test_does_a_refund_event_about_a_portico_refund_change_nothing(
    app: Flask, db: Session, shop: Shop, invoice: Invoice
) -> None:
    paid = pay_by_card(app, db, shop, invoice, 10000)
    outcome = refunds.refund_payment(
        db, sandbox(app), shop.admin, paid.id, RefundForm(amount="25.00"),
        token=token(app, f"refund:{paid.id}"), now=NOW,
    )  # fmt: skip
    assert outcome.approved

    delivery = receive(
        app, db, event("charge.refunded", charge_object(processor_charge(app, paid)))
    )

    assert delivery.outcome == "noop"
    assert [r.amount for r in refund_rows(db, paid)] == [2500]
    assert fresh(db, Payment, paid.id).refunded_amount == 2500


def test_does_a_refund_whose_answer_was_lost_settle_from_the_event(
    app: Flask, db: Session, shop: Shop, invoice: Invoice
) -> None:
    paid = pay_by_card(app, db, shop, invoice, 10000)
    sandbox(app).inject("timeout_after_charge", operation="refund")
    lost = refunds.refund_payment(
        db, sandbox(app), shop.admin, paid.id, RefundForm(amount="30.00"),
        token=token(app, f"refund:{paid.id}"), now=NOW,
    )  # fmt: skip
    assert lost.status == PaymentStatus.UNKNOWN
    ours = {
        "id": "re_sbx_from_event",
        "object": "refund",
        "amount": 3000,
        "status": "succeeded",
        "metadata": {"idempotency_key": lost.refund.idempotency_key},
    }
    charge = charge_object(processor_charge(app, paid), refunds={"data": [ours]})

    delivery = receive(app, db, event("charge.refunded", charge))

    assert delivery.outcome == "applied"
    [row] = refund_rows(db, paid)
    assert (row.id, row.status, row.gateway_reference) == (
        lost.refund.id,
        PaymentStatus.APPROVED,
        "re_sbx_from_event",
    )
    assert fresh(db, Payment, paid.id).refunded_amount == 3000


def test_does_a_refund_arriving_before_the_success_end_paid_and_refunded(
    app: Flask, db: Session, shop: Shop, invoice: Invoice
) -> None:
    attempt = lost_payment(app, db, shop, invoice, 10000)
    record = processor_charge(app, attempt)
    success = event("charge.succeeded", charge_object(record), created=CREATED)
    sandbox(app).refund(reference=record.reference, amount=2500, idempotency_key="dash-3")
    refund = event(
        "charge.refunded", charge_object(processor_charge(app, attempt)), created=CREATED + 60
    )

    outcomes = [receive(app, db, refund).outcome, receive(app, db, success).outcome]

    assert outcomes == ["applied", "stale"]
    settled = fresh(db, Payment, attempt.id)
    assert (settled.status, settled.refunded_amount) == (PaymentStatus.APPROVED, 2500)
    assert [r.amount for r in refund_rows(db, attempt)] == [2500]
    assert fresh(db, Invoice, invoice.id).amount_paid == 7500
    assert receipts(db, attempt) == 1


def test_does_an_older_refund_total_after_a_newer_one_change_nothing(
    app: Flask, db: Session, shop: Shop, invoice: Invoice
) -> None:
    paid = pay_by_card(app, db, shop, invoice, 10000)
    record = processor_charge(app, paid)
    older = event("charge.refunded", charge_object(record, amount_refunded=1000), created=CREATED)
    newer = event(
        "charge.refunded", charge_object(record, amount_refunded=3000), created=CREATED + 9
    )

    outcomes = [receive(app, db, newer).outcome, receive(app, db, older).outcome]

    assert outcomes == ["applied", "stale"]
    assert [r.amount for r in refund_rows(db, paid)] == [3000]
    assert fresh(db, Payment, paid.id).refunded_amount == 3000


# -- crashes ---------------------------------------------------------------------------


def test_is_an_event_whose_inserter_died_applied_by_a_later_delivery(
    app: Flask, db: Session, shop: Shop, invoice: Invoice
) -> None:
    attempt = lost_payment(app, db, shop, invoice, 10000)
    evt = event("charge.succeeded", charge_object(processor_charge(app, attempt)))
    # The row as a delivery that died right after its insert committed leaves it.
    db.add(
        ProcessorEvent(
            gateway="sandbox",
            event_id=evt.id,
            type=evt.type,
            object_ref=processor_charge(app, attempt).reference,
            event_created=evt.created,
            payload=dict(evt.data),
            received_at=NOW,
        )
    )
    db.commit()

    soon = receive(app, db, evt, now=NOW + timedelta(seconds=5))
    assert (soon.duplicate, fresh(db, Payment, attempt.id).status) == (True, "unknown")
    later = receive(app, db, evt, now=NOW + webhooks.RETRY_AFTER + timedelta(seconds=1))

    assert (later.duplicate, later.outcome) == (False, "applied")
    assert fresh(db, Payment, attempt.id).status == PaymentStatus.APPROVED
    assert receipts(db, attempt) == 1


def test_does_the_sweeper_apply_a_failed_event_once(
    app: Flask, db: Session, shop: Shop, invoice: Invoice
) -> None:
    attempt = lost_payment(app, db, shop, invoice, 10000)
    evt = event("charge.succeeded", charge_object(processor_charge(app, attempt)))
    receive(app, db, evt)
    # As if applying had raised after the effects committed: the row says failed.
    db.execute(
        update(ProcessorEvent).values(outcome="failed", error="OperationalError", applied_at=None)
    )
    db.commit()

    swept = webhooks.apply_unapplied(db, sandbox(app), now=NOW)
    swept_again = webhooks.apply_unapplied(db, sandbox(app), now=NOW)

    assert [d.outcome for d in swept] == ["noop"] and swept_again == []
    [row] = events(db)
    assert (row.outcome, row.error) == ("noop", "")
    assert receipts(db, attempt) == 1
    db.rollback()
    assert db.exec(select(Payment).where(Payment.id == attempt.id)).one().status == "approved"


def test_does_the_cron_sweeper_apply_an_abandoned_event_through_a_real_worker(
    app: Flask, db: Session, shop: Shop, invoice: Invoice
) -> None:
    from rq import Queue, cron

    from app.clock import utcnow
    from app.jobs import cron as _schedule  # noqa: F401  (registers the cron jobs)
    from app.jobs.maintenance import apply_webhook_events
    from app.jobs.worker import PorticoWorker

    attempt = lost_payment(app, db, shop, invoice, 10000)
    evt = event("charge.succeeded", charge_object(processor_charge(app, attempt)))
    # Stored two minutes ago by a delivery that died before applying it.
    db.add(
        ProcessorEvent(
            gateway="sandbox",
            event_id=evt.id,
            type=evt.type,
            object_ref=processor_charge(app, attempt).reference,
            event_created=evt.created,
            payload=dict(evt.data),
            received_at=utcnow() - timedelta(minutes=2),
        )
    )
    db.commit()
    redis = app.extensions["portico"].redis
    queue = Queue("default", connection=redis)

    for _ in range(2):
        queue.enqueue("app.jobs.maintenance.apply_webhook_events")
        PorticoWorker([queue], connection=redis).work(burst=True)

    [row] = events(db)
    assert (row.outcome, row.applied_at is not None) == ("applied", True)
    assert fresh(db, Payment, attempt.id).status == PaymentStatus.APPROVED
    assert receipts(db, attempt) == 1
    assert apply_webhook_events in [job["func"] for job in cron._job_data_registry]
