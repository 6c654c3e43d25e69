"""Shared set-up for the webhook tests: payments whose answer was lost, and processor
events shaped like Stripe's (a charge object with ``amount_refunded`` and metadata)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from typing import Any

from flask import Flask
from sqlmodel import Session, func, select

from app.gateway.base import WebhookEvent
from app.gateway.sandbox import SandboxChargeRecord
from app.models import Invoice, OutboxMessage, Payment, PaymentKind, ProcessorEvent
from app.services import pay_links
from app.services.card_testing import DeclineLimit
from tests.services.invoice_helpers import Shop, token
from tests.services.payer_helpers import ADDRESS, NOW, card, sandbox

# Event creation times (seconds since the epoch) around NOW, for ordering cases.
CREATED = int(NOW.timestamp())
_ids = itertools.count(1)


def lost_payment(app: Flask, db: Session, shop: Shop, invoice: Invoice, amount: int) -> Payment:
    """The customer pays ``amount`` of the invoice; the sandbox charges the card but the
    answer is lost, so the attempt stays ``unknown`` (money moved, nothing applied)."""
    sandbox(app).inject("timeout_after_charge")
    view = pay_links.LinkView(None, invoice, shop.partner, shop.account, "payable")
    form = token(app, f"paylink:{invoice.id}")
    outcome = pay_links.pay_invoice(
        db, sandbox(app), view=view, form=form, amount=amount, method=card(sandbox(app)),
        payer_email=shop.account.email, client_address=ADDRESS, now=NOW, limit=DeclineLimit(),
    )  # fmt: skip
    assert outcome.status == "unknown", outcome
    return db.exec(select(Payment).where(Payment.purpose_key == form.purpose_key)).one()


def processor_charge(app: Flask, payment: Payment) -> SandboxChargeRecord:
    """The sandbox's charge behind ``payment`` (found by our purpose key in its metadata)."""
    (record,) = [
        c
        for c in sandbox(app).list_charges()
        if c.metadata.get("purpose_key") == payment.purpose_key
    ]
    return record


def charge_object(record: SandboxChargeRecord, **changes: Any) -> dict[str, Any]:
    """A Stripe-shaped charge object of a sandbox charge, as the processor would send it."""
    obj: dict[str, Any] = {
        "id": record.reference,
        "object": "charge",
        "amount": record.amount,
        "amount_captured": record.captured_amount,
        "amount_refunded": record.refunded_amount,
        "currency": record.currency.lower(),
        "status": "succeeded" if record.status != "failed" else "failed",
        "paid": record.status != "failed",
        "refunded": record.refunded_amount >= record.amount,
        "metadata": dict(record.metadata),
    }
    obj.update(changes)
    return obj


def event(
    type_: str, obj: Mapping[str, Any], *, created: int = CREATED, event_id: str = ""
) -> WebhookEvent:
    """A verified event as a gateway's ``parse_webhook`` returns it."""
    return WebhookEvent(
        id=event_id or f"evt_test_{next(_ids)}", type=type_, data=dict(obj), created=created
    )


def payload(evt: WebhookEvent) -> bytes:
    """The sandbox's wire format of ``evt`` (the object is the event's ``data``)."""
    body = {"id": evt.id, "type": evt.type, "created": evt.created, "data": dict(evt.data)}
    return json.dumps(body).encode()


def count(db: Session, model: type, *where: Any) -> int:
    db.rollback()
    return db.exec(select(func.count()).select_from(model).where(*where)).one()


def receipts(db: Session, payment: Payment) -> int:
    return count(db, OutboxMessage, OutboxMessage.dedupe_key == f"receipt:payment:{payment.id}")


def refund_rows(db: Session, parent: Payment) -> list[Payment]:
    db.rollback()
    return list(
        db.exec(
            select(Payment).where(
                Payment.parent_payment_id == parent.id, Payment.kind == PaymentKind.REFUND
            )
        ).all()
    )


def events(db: Session) -> list[ProcessorEvent]:
    db.rollback()
    return list(db.exec(select(ProcessorEvent).order_by(ProcessorEvent.id)).all())
