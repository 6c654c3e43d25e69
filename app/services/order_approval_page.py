"""What the customer's approval page shows: the order to sign, or its outcome once signed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlmodel import Session, col, select

from app.clock import local_day
from app.domain.orders import OrderStatus
from app.models import CustomerAccount, Order, OrderLine, Partner, Payment, PaymentStatus
from app.services import order_payments, payments
from app.services.order_activation import order_lines


@dataclass(frozen=True)
class ApprovalPage:
    """What the approval page shows. ``state`` is ``open`` (sign here) or ``done``.

    ``outcome`` (done only): approved (signed, no payment taken), paid, declined or
    processing (the payment is being confirmed). ``payment`` is the order's latest payment
    attempt, for the confirmation (amount, card) or the decline reason.
    """

    order: Order
    lines: list[OrderLine]
    partner: Partner
    customer: CustomerAccount
    takes_payment: bool
    sequence: int
    state: str
    expires_on: date | None
    outcome: str = ""
    payment: Payment | None = None


def latest_payment(session: Session, order_id: int) -> Payment | None:
    """The order's newest payment attempt, if any."""
    return session.exec(
        select(Payment).where(Payment.order_id == order_id).order_by(col(Payment.id).desc())
    ).first()


def after_payment_settles(session: Session, order: Order) -> Order:
    """A payment still with the processor (a second tab): wait briefly for its answer."""
    latest = latest_payment(session, order.id)  # type: ignore[arg-type]
    if latest is not None and latest.status == PaymentStatus.PENDING:
        payments.wait_until_settled(session, latest.id)  # type: ignore[arg-type]
    fresh = session.get(Order, order.id, populate_existing=True)
    assert fresh is not None
    return fresh


def _outcome(order: Order, payment: Payment | None) -> str:
    status = OrderStatus(order.status)
    if status == OrderStatus.DECLINED:
        return "declined"
    if status == OrderStatus.PROCESSING:
        return "processing"
    if (
        status in (OrderStatus.ACTIVATED, OrderStatus.SCHEDULED)
        and payment is not None
        and payment.status == PaymentStatus.APPROVED
    ):
        return "paid"
    return "approved"


def page_for(session: Session, order: Order, partner: Partner, state: str) -> ApprovalPage:
    """The approval page's view of ``order``: ``open`` (sign here) or ``done`` (its outcome)."""
    account = session.get(CustomerAccount, order.customer_account_id)
    assert account is not None
    payment = latest_payment(session, order.id) if state == "done" else None  # type: ignore[arg-type]
    expires = order.approval_expires_at
    return ApprovalPage(
        order=order,
        lines=order_lines(session, order.id),  # type: ignore[arg-type]
        partner=partner,
        customer=account,
        takes_payment=order.approval_takes_payment,
        sequence=order_payments.next_submit_sequence(order),
        state=state,
        expires_on=local_day(partner.timezone, expires) if expires and state == "open" else None,
        outcome=_outcome(order, payment) if state == "done" else "",
        payment=payment,
    )
