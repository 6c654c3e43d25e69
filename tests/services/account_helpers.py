"""Rows for account-page tests: payments, cards and history events on demo accounts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session, select

from app.models import (
    AuditEvent,
    CustomerAccount,
    Payment,
    PaymentKind,
    PaymentMethod,
    PaymentStatus,
    Subscription,
    User,
)

US_ADMIN = "admin@us-partner.example"
US_SALES = "sales@us-partner.example"
DE_ADMIN = "admin@de-partner.example"
JORDAN = "customer@example.com"
KOELN = "kasse@koelner-chor.example"
# Later than anything the demo writes, so the rows added here are the newest.
BASE = datetime.now(UTC) + timedelta(days=1)


def user(db: Session, email: str) -> User:
    return db.exec(select(User).where(User.email == email)).one()


def account(db: Session, email: str) -> CustomerAccount:
    return db.exec(select(CustomerAccount).where(CustomerAccount.email == email)).one()


def subscriptions(db: Session, owner: CustomerAccount) -> list[Subscription]:
    query = select(Subscription).where(Subscription.customer_account_id == owner.id)
    return list(db.exec(query.order_by(Subscription.id)).all())


def add_payments(
    db: Session, owner: CustomerAccount, count: int, *, start: int = 0
) -> list[Payment]:
    """``count`` approved card charges, one minute apart, the last the newest of all."""
    rows = [
        Payment(
            partner_id=owner.partner_id,
            customer_account_id=owner.id,
            purpose_key=f"test:{owner.id}:{n}",
            idempotency_key=f"test:{owner.id}:{n}",
            kind=PaymentKind.CHARGE,
            method="card",
            status=PaymentStatus.APPROVED,
            amount=1000 + n,
            currency=owner.currency,
            brand="visa",
            last4="4242",
            created_at=BASE + timedelta(minutes=n),
        )
        for n in range(start, start + count)
    ]
    db.add_all(rows)
    db.commit()
    return rows


def add_events(
    db: Session, owner: CustomerAccount, count: int, *, actor: User, start: int = 0
) -> None:
    """``count`` history events, alternating between the account and its first subscription.

    The subscription events carry no account id, as older rows might: the timeline
    must still find them through the subscription.
    """
    sub = subscriptions(db, owner)[0]
    for n in range(start, start + count):
        on_sub = n % 2 == 1
        db.add(
            AuditEvent(
                partner_id=owner.partner_id,
                customer_account_id=None if on_sub else owner.id,
                actor_user_id=actor.id,
                actor_label=actor.email,
                action="subscription.skipped" if on_sub else "billing_on_behalf.email_changed",
                subject_type="subscription" if on_sub else "account",
                subject_id=sub.id if on_sub else owner.id,
                detail={"date": f"2030-01-{n % 28 + 1:02d}"}
                if on_sub
                else {"old": f"old{n}@example.com", "new": f"new{n}@example.com"},
                created_at=BASE + timedelta(minutes=n),
            )
        )
    db.commit()


def add_card(db: Session, owner: CustomerAccount, *, last4: str, month: int, year: int) -> None:
    db.add(
        PaymentMethod(
            partner_id=owner.partner_id,
            customer_account_id=owner.id,
            gateway="sandbox",
            token=f"tok_test_{owner.id}_{last4}",
            kind="card",
            brand="visa",
            last4=last4,
            exp_month=month,
            exp_year=year,
        )
    )
    db.commit()
