"""Scheduled payment rows: their locks, what is scheduled of an invoice, their history.

Shared by the portal side (:mod:`app.services.payment_scheduling`) and the billing run's
side (:mod:`app.services.scheduled_payments`).
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import update
from sqlmodel import Session, col, func, select

from app.domain.money import format_money
from app.models import Invoice, PaymentMethod, ScheduledPayment, ScheduledStatus
from app.services.audit_log import add_event

LIVE: Final = (ScheduledStatus.SCHEDULED, ScheduledStatus.PROCESSING)
RUN_ACTOR: Final = "billing run"


def purpose_key(scheduled_id: int) -> str:
    """The purpose key of a scheduled payment's one charge attempt."""
    return f"sched:{scheduled_id}"


def method_label(method: PaymentMethod) -> str:
    """ "Visa •••• 4242", or the bank's name and last 4 digits of a bank account."""
    if method.kind == "card":
        return f"{(method.brand or 'Card').title()} •••• {method.last4}"
    return f"{method.bank_name or 'Bank account'} •••• {method.last4}"


def lock_scheduled(
    session: Session, scheduled_id: int, *, skip_locked: bool = False
) -> ScheduledPayment | None:
    """The row, locked in the caller's transaction (None: missing, or held elsewhere when
    ``skip_locked``). PostgreSQL locks the row; SQLite takes the database write lock."""
    if session.get_bind().dialect.name == "postgresql":
        query = (
            select(ScheduledPayment)
            .where(ScheduledPayment.id == scheduled_id)
            .with_for_update(skip_locked=skip_locked)
        )
        return session.exec(query.execution_options(populate_existing=True)).first()
    session.execute(
        update(ScheduledPayment)
        .where(col(ScheduledPayment.id) == scheduled_id)
        .values(status=ScheduledPayment.status)
    )
    return session.get(ScheduledPayment, scheduled_id, populate_existing=True)


def lock_invoice(session: Session, invoice_id: int) -> Invoice:
    """The invoice, locked in the caller's transaction (a no-op UPDATE, as pay links do)."""
    session.execute(
        update(Invoice).where(col(Invoice.id) == invoice_id).values(amount_paid=Invoice.amount_paid)
    )
    invoice = session.get(Invoice, invoice_id, populate_existing=True)
    assert invoice is not None
    return invoice


def scheduled_total(session: Session, invoice_id: int) -> int:
    """What is scheduled (or being charged) for the invoice and not yet paid."""
    query = select(func.coalesce(func.sum(ScheduledPayment.amount), 0)).where(
        ScheduledPayment.invoice_id == invoice_id, col(ScheduledPayment.status).in_(LIVE)
    )
    return int(session.exec(query).one())


def audit(
    session: Session,
    row: ScheduledPayment,
    action: str,
    *,
    actor_user_id: int | None = None,
    actor_label: str = RUN_ACTOR,
    **detail: object,
) -> None:
    """Add a history row about ``row`` to the caller's transaction."""
    add_event(
        session, action=f"scheduled_payment.{action}", subject_type="scheduled_payment",
        subject_id=row.id, partner_id=row.partner_id,
        customer_account_id=row.customer_account_id, actor_user_id=actor_user_id,
        actor_label=actor_label,
        detail={"amount": format_money(row.amount, row.currency), **detail},
    )  # fmt: skip
