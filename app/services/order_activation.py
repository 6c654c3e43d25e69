"""What an order's approved payment does, and the activation of scheduled orders.

A paid order gets a paid invoice for its lines (issued on the partner's local day) and a
receipt email; it is activated at once when its activation date has come, otherwise
``scheduled`` and activated on that partner-local day by :func:`activate_due_orders`.
Activation creates a subscription for every recurring line: its first period is the one
the order's payment paid, so the billing run charges from the second period on.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlmodel import Session, col, select

from app.clock import local_day
from app.domain import schedule as rules
from app.domain.orders import DECLINED_TAG, OrderStatus
from app.models import (
    CustomerAccount,
    Order,
    OrderLine,
    Partner,
    Payment,
    Subscription,
)
from app.services.invoices import LineInput, add_invoice, apply_paid_amount
from app.services.notifications import write_receipt
from app.services.order_access import lock_order, move, record
from app.services.schedules import refresh_next_charge_date


def order_lines(session: Session, order_id: int) -> list[OrderLine]:
    """The order's lines in their order on the page."""
    return list(
        session.exec(
            select(OrderLine)
            .where(OrderLine.order_id == order_id)
            .order_by(col(OrderLine.position), col(OrderLine.id))
        ).all()
    )


def apply_order_payment(
    session: Session, order: Order, payment: Payment, *, now: datetime
) -> list[int]:
    """Every effect of an approved charge or capture of ``order`` (caller commits).

    A paid invoice for the order's lines, dated the partner's local day of ``now`` (a
    partial capture leaves the rest due), the "Payment declined" tag removed, the order
    activated or scheduled, a receipt email. Returns the email row ids. Raises
    IllegalTransition if the order is not waiting for this payment (processing or
    authorized).
    """
    account = session.get(CustomerAccount, order.customer_account_id)
    partner = session.get(Partner, order.partner_id)
    assert account is not None and partner is not None
    as_of = local_day(partner.timezone, now)
    invoice = add_invoice(
        session,
        partner=partner,
        account=account,
        lines=[
            LineInput(line.description, line.quantity, line.unit_amount, line.product_id)
            for line in order_lines(session, order.id)  # type: ignore[arg-type]
        ],
        issue_date=as_of,
        due_date=as_of,
    )
    apply_paid_amount(invoice, min(payment.amount, invoice.total))
    invoice.memo = f"Order {order.number}"
    session.add(invoice)
    payment.invoice_id = invoice.id
    session.add(payment)
    order.invoice_id = invoice.id
    order.payment_id = payment.id
    order.tags = [tag for tag in order.tags if tag != DECLINED_TAG]
    order.decline_reason = ""
    if order.activation_date is not None and order.activation_date > as_of:
        move(order, OrderStatus.SCHEDULED, now=now)
        record(session, order, "order.scheduled", on=order.activation_date.isoformat())
    else:
        activate(session, order, as_of=as_of, now=now)
    session.add(order)
    session.flush()
    return write_receipt(
        session, payment, to_address=account.billing_email or account.email, partner=partner
    )


def activate(session: Session, order: Order, *, as_of: date, now: datetime) -> list[int]:
    """Activate a paid order: a subscription per recurring line (caller commits).

    Returns the new subscription ids. Raises IllegalTransition from a status that
    cannot become ``activated``.
    """
    move(order, OrderStatus.ACTIVATED, now=now)
    order.activated_on = as_of
    payment = session.get(Payment, order.payment_id) if order.payment_id else None
    method_id = payment.payment_method_id if payment else None
    created: list[int] = []
    for line in order_lines(session, order.id):  # type: ignore[arg-type]
        if line.frequency == rules.Frequency.ONCE or line.subscription_id is not None:
            continue
        sub = _subscription_for(order, line, method_id)
        session.add(sub)
        session.flush()
        line.subscription_id = sub.id
        session.add(line)
        created.append(sub.id)  # type: ignore[arg-type]
    session.add(order)
    record(session, order, "order.activated", subscriptions=created)
    return created


def _subscription_for(order: Order, line: OrderLine, method_id: int | None) -> Subscription:
    price = line.amount + line.tax_amount
    sub = Subscription(
        partner_id=order.partner_id,
        customer_account_id=order.customer_account_id,
        product_id=line.product_id,
        payment_method_id=method_id,
        description=line.description,
        status=rules.SubscriptionStatus.RECURRING,
        frequency=line.frequency,
        currency=order.currency,
        manual_amount=price,
        start_date=line.activation_date,
        stop_rule=rules.StopRule.UNENDING,
        recurring_count=1,  # the order's payment paid the first period
        amount_charged=price,
    )
    refresh_next_charge_date(sub)
    return sub


def activate_due_orders(session: Session, *, partner_id: int, as_of: date, now: datetime) -> int:
    """Activate the partner's scheduled orders whose activation date is ``as_of`` or
    earlier (the partner-local day). Each commits on its own; running again activates
    nothing twice. Returns how many were activated.
    """
    due = session.exec(
        select(Order.id).where(
            Order.partner_id == partner_id,
            Order.status == OrderStatus.SCHEDULED,
            col(Order.activation_date) <= as_of,
        )
    ).all()
    session.rollback()
    activated = 0
    for order_id in due:
        order = lock_order(session, order_id)  # type: ignore[arg-type]
        if order.status != OrderStatus.SCHEDULED:
            session.rollback()
            continue
        activate(session, order, as_of=as_of, now=now)
        session.commit()
        activated += 1
    return activated
