"""How an order's payment attempts read: the outcome shown to people, and the Payment tab."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel import Session, col, select

from app.domain.money import format_money
from app.domain.orders import OrderStatus
from app.gateway.base import GatewayResult
from app.models import Order, Payment, PaymentKind, PaymentStatus
from app.services import payments


@dataclass(frozen=True)
class OrderPaymentOutcome:
    """A payment submission (or capture, or void) of an order as it stands."""

    status: str  # payment status: approved | declined | error | unknown | pending
    order_id: int
    order_status: str
    payment_id: int | None
    message: str
    email_ids: tuple[int, ...] = field(default=())

    @property
    def approved(self) -> bool:
        return self.status == PaymentStatus.APPROVED


def card_of(payment: Payment) -> dict[str, str]:
    return {"brand": payment.brand, "last4": payment.last4}


def outcome_of(
    session: Session, attempt: Payment, email_ids: list[int] | None = None
) -> OrderPaymentOutcome:
    """An order payment attempt (submission, capture or void) as it stands now."""
    order = session.get(Order, attempt.order_id, populate_existing=True)
    assert order is not None
    status = str(attempt.status)
    amount = format_money(attempt.amount, attempt.currency)
    if status == PaymentStatus.APPROVED:
        message = _approved_message(attempt, order, amount)
    else:
        message = payments.unapproved_message(attempt)
    return OrderPaymentOutcome(
        status=status,
        order_id=order.id,  # type: ignore[arg-type]
        order_status=order.status,
        payment_id=attempt.id,
        message=message,
        email_ids=tuple(email_ids or ()),
    )


def _approved_message(attempt: Payment, order: Order, amount: str) -> str:
    if attempt.kind == PaymentKind.AUTHORIZATION:
        return f"{amount} authorized: capture or void it from the order."
    if attempt.kind == PaymentKind.VOID:
        return "The authorization was voided; nothing was charged."
    if order.status == OrderStatus.SCHEDULED and order.activation_date is not None:
        on = f"{order.activation_date:%B} {order.activation_date.day}, {order.activation_date.year}"
        return f"Payment of {amount} approved. The order activates on {on}."
    return f"Payment of {amount} approved. The order is activated."


def order_payments(session: Session, order_id: int) -> list[Payment]:
    """Every payment attempt of an order, newest first (the order's Payment tab)."""
    return list(
        session.exec(
            select(Payment).where(Payment.order_id == order_id).order_by(col(Payment.id).desc())
        ).all()
    )


def claim_or_outcome(
    session: Session, attempt: Payment, result: GatewayResult, *, now: datetime
) -> OrderPaymentOutcome | None:
    """Record the processor's answer on an open order attempt (step 3 begins).

    Returns None when this call claimed a definite answer: the caller applies its effects
    and commits. Otherwise returns the attempt's outcome as it stands: someone else
    settled it first (nothing is applied twice), or the answer was lost (``unknown``,
    committed, left to the reconciler).
    """
    if not payments.claim_outcome(session, attempt, result, now=now):
        session.rollback()
        settled = session.get(Payment, attempt.id, populate_existing=True)
        assert settled is not None
        return outcome_of(session, settled)
    if result.status == PaymentStatus.UNKNOWN:
        session.commit()
        return outcome_of(session, attempt)
    return None
