"""Shared by the order services: who may reach an order and do what, row locks, history.

Partner users reach their partner's orders; anyone else gets NotFound, exactly like an
order that does not exist. What a sales user may do depends on the partner's order
settings (ADR 0015); a refusal is ``Forbidden`` with the reason in plain words.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from sqlalchemy import update
from sqlmodel import Session, col, select

from app.domain.errors import Forbidden, NotFound
from app.domain.orders import OrderStatus, transition
from app.models import Order, Partner, Role, User
from app.services.audit_log import add_event
from app.services.tenancy import owned, partner_id_of

SEND_SETTING: Final = "Allow salespeople to send an order to customers for approval"
PAYMENT_SETTING: Final = "Orders sent for approval by salespeople can accept payment"


def partner_order(session: Session, user: User, order_id: int) -> Order:
    """One order of the partner user's partner. Raises NotFound otherwise."""
    partner_id_of(user)
    return owned(session, user, Order, order_id)


def lock_order(session: Session, order_id: int) -> Order:
    """The order, freshly read and locked in the current transaction.

    PostgreSQL: ``FOR UPDATE``. SQLite has no row locks: a no-op write takes the database
    write lock first. Raises NotFound when the row is gone.
    """
    if session.get_bind().dialect.name == "postgresql":
        order = session.exec(
            select(Order)
            .where(Order.id == order_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        ).first()
    else:
        session.execute(update(Order).where(col(Order.id) == order_id).values(status=Order.status))
        order = session.get(Order, order_id, populate_existing=True)
    if order is None:
        raise NotFound("Not found.")
    return order


def collect_refusal(partner: Partner, user: User) -> str:
    """Why ``user`` may not take a payment on an order ("" when they may)."""
    if user.role == Role.PARTNER_ADMIN or partner.sales_collect_payment:
        return ""
    return (
        "Your administrator has not allowed salespeople to collect payments on orders "
        f"(Settings → Orders: “{PAYMENT_SETTING}”)."
    )


def send_refusal(partner: Partner, user: User) -> str:
    """Why ``user`` may not send an order for customer approval ("" when they may)."""
    if user.role == Role.PARTNER_ADMIN or partner.sales_send_for_approval:
        return ""
    return (
        "Your administrator has not allowed salespeople to send orders to customers for "
        f"approval (Settings → Orders: “{SEND_SETTING}”)."
    )


def ensure_may_collect(partner: Partner, user: User) -> None:
    """Raises Forbidden (with the reason) unless ``user`` may take a payment on an order."""
    reason = collect_refusal(partner, user)
    if reason:
        raise Forbidden(reason)


def ensure_may_send(partner: Partner, user: User) -> None:
    """Raises Forbidden (with the reason) unless ``user`` may send an order for approval."""
    reason = send_refusal(partner, user)
    if reason:
        raise Forbidden(reason)


def approval_takes_payment(partner: Partner, user: User) -> bool:
    """Whether the approval page of an order ``user`` sends asks the customer for a card."""
    return not collect_refusal(partner, user)


def move(order: Order, target: OrderStatus, *, now: datetime) -> None:
    """Change the order's status through the status machine (no commit).

    Raises IllegalTransition when the move is not allowed from the current status.
    """
    order.status = transition(order.status, target)
    order.updated_at = now


def record(
    session: Session,
    order: Order,
    action: str,
    *,
    user: User | None = None,
    actor_label: str = "",
    **detail: Any,
) -> None:
    """Add an event to the order's history (no commit). ``action`` is ``order.<verb>``."""
    add_event(
        session, action=action, subject_type="order", subject_id=order.id,
        partner_id=order.partner_id, customer_account_id=order.customer_account_id,
        actor=user, actor_label="" if user else actor_label, detail=detail,
    )  # fmt: skip
