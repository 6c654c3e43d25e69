"""Shared by the subscription services: who may reach a subscription, row locks, audit.

Partner users reach their partner's subscriptions, customers their own account's;
anyone else gets NotFound, exactly like a record that does not exist.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import update
from sqlmodel import Session, col, select

from app.domain import schedule as rules
from app.domain.errors import NotFound
from app.models import PaymentMethod, Role, Subscription, User
from app.services.audit_log import add_event
from app.services.schedules import refresh_next_charge_date, schedule_of
from app.services.tenancy import owned, partner_id_of


def partner_subscription(session: Session, user: User, subscription_id: int) -> Subscription:
    """One subscription of the partner user's partner. Raises NotFound otherwise."""
    partner_id_of(user)
    return owned(session, user, Subscription, subscription_id)


def customer_subscription_row(session: Session, user: User, subscription_id: int) -> Subscription:
    """One subscription of the customer's own account. Raises NotFound otherwise."""
    if user.role != Role.CUSTOMER or user.customer_account_id is None:
        raise NotFound("Not found.")
    return owned(session, user, Subscription, subscription_id)


def lock_in_transaction(session: Session, subscription_id: int) -> Subscription:
    """The row, freshly read and locked in the current transaction.

    PostgreSQL: ``FOR UPDATE`` (a billing run that holds it makes us wait). SQLite has
    no row locks: a no-op write takes the database write lock first, as the billing run
    does. Raises NotFound when the row is gone.
    """
    if session.get_bind().dialect.name == "postgresql":
        query = (
            select(Subscription)
            .where(Subscription.id == subscription_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        sub = session.exec(query).first()
    else:
        session.execute(
            update(Subscription)
            .where(col(Subscription.id) == subscription_id)
            .values(status=Subscription.status)
        )
        sub = session.get(Subscription, subscription_id, populate_existing=True)
    if sub is None:
        raise NotFound("Not found.")
    return sub


def lock(session: Session, subscription_id: int) -> Subscription:
    """The row locked in a new transaction (anything read before is discarded)."""
    session.rollback()
    return lock_in_transaction(session, subscription_id)


def locked_for_partner(session: Session, user: User, subscription_id: int) -> Subscription:
    """A partner's subscription, locked in a new transaction. Raises NotFound."""
    sub = partner_subscription(session, user, subscription_id)
    return lock(session, sub.id)  # type: ignore[arg-type]


def audit(
    session: Session, user: User | None, sub: Subscription, action: str, **detail: object
) -> None:
    """Add a history row for ``sub`` to the caller's transaction."""
    add_event(
        session, action=action, subject_type="subscription", subject_id=sub.id,
        partner_id=sub.partner_id, customer_account_id=sub.customer_account_id,
        actor=user, detail=detail,
    )  # fmt: skip


def default_method(session: Session, account_id: int) -> PaymentMethod | None:
    """The account's default payment method (else its oldest), if any."""
    return session.exec(
        select(PaymentMethod)
        .where(PaymentMethod.customer_account_id == account_id)
        .order_by(col(PaymentMethod.is_default).desc(), PaymentMethod.id)
    ).first()


def method_of(session: Session, sub: Subscription) -> PaymentMethod | None:
    """The subscription's own method, else the account's default (as the billing run)."""
    if sub.payment_method_id:
        method = session.get(PaymentMethod, sub.payment_method_id)
        if method is not None:
            return method
    return default_method(session, sub.customer_account_id)


def derived_next(sub: Subscription) -> date | None:
    """The next charge date the row's schedule and counters give (None at the stop)."""
    return rules.next_charge_date(
        schedule_of(sub),
        charged_periods=sub.recurring_count,
        amount_charged=sub.amount_charged,
        first_period=sub.first_period,
    )


def store_next(sub: Subscription) -> None:
    """Store the derived next date (``complete`` at the stop rule); none while stopped."""
    refresh_next_charge_date(sub)
    if sub.status == rules.SubscriptionStatus.STOPPED:
        sub.next_charge_date = None


def word(status: str) -> str:
    """A status as a word in a sentence ("in error" reads as "error")."""
    return str(status).replace("_", " ")
