"""Rows for the dashboard, customer-list and export tests, written straight to the tables.

The figures under test are read models over invoices, payments and schedules, so the
tests build exactly the rows they need (dates in the past, odd statuses, other
currencies) instead of going through the services that would refuse them.
"""

from __future__ import annotations

import itertools
from datetime import date, datetime

from sqlmodel import Session

from app.models import (
    CustomerAccount,
    Invoice,
    Partner,
    Payment,
    PaymentStatus,
    Role,
    Subscription,
    User,
)
from app.services.schedules import refresh_next_charge_date

_serial = itertools.count(1)


def make_partner(
    session: Session,
    slug: str,
    *,
    timezone: str = "America/New_York",
    currency: str = "USD",
    role: str = Role.PARTNER_ADMIN,
) -> tuple[Partner, User]:
    """A partner and one user of it with ``role``."""
    partner = Partner(
        name=f"{slug.title()} Partner", slug=slug, country="US", timezone=timezone,
        currency=currency,
    )  # fmt: skip
    session.add(partner)
    session.flush()
    user = User(email=f"{role}@{slug}.example", password_hash="x", role=role, partner_id=partner.id)
    session.add(user)
    session.commit()
    return partner, user


def make_account(
    session: Session, partner: Partner, name: str, **fields: object
) -> CustomerAccount:
    slug = name.lower().replace(" ", "-")
    fields.setdefault("email", f"{slug}-{next(_serial)}@example.com")
    account = CustomerAccount(
        partner_id=partner.id,  # type: ignore[arg-type]
        name=name,
        currency=partner.currency,
        **fields,  # type: ignore[arg-type]
    )
    session.add(account)
    session.commit()
    return account


def make_invoice(
    session: Session,
    account: CustomerAccount,
    *,
    status: str,
    total: int,
    due: date,
    paid: int = 0,
    issue: date | None = None,
    currency: str | None = None,
    number: str | None = None,
) -> Invoice:
    n = next(_serial)
    invoice = Invoice(
        partner_id=account.partner_id,
        customer_account_id=account.id,  # type: ignore[arg-type]
        series="T",
        sequence=n,
        number=number or f"T-{n:05d}",
        status=status,
        currency=currency or account.currency,
        issue_date=issue or due,
        due_date=due,
        subtotal=total,
        tax=0,
        total=total,
        amount_paid=paid,
    )
    session.add(invoice)
    session.commit()
    return invoice


def make_payment(
    session: Session,
    account: CustomerAccount,
    *,
    kind: str,
    amount: int,
    status: str = PaymentStatus.APPROVED,
    received_on: date | None = None,
    settled_at: datetime | None = None,
    currency: str | None = None,
    method: str = "card",
    invoice: Invoice | None = None,
    reference: str = "",
) -> Payment:
    key = f"test:{next(_serial)}"
    payment = Payment(
        partner_id=account.partner_id,
        customer_account_id=account.id,
        invoice_id=invoice.id if invoice else None,
        purpose_key=key,
        idempotency_key=key,
        kind=kind,
        method=method,
        status=status,
        amount=amount,
        currency=currency or account.currency,
        received_on=received_on,
        settled_at=settled_at,
        reference=reference,
    )
    if settled_at is not None:
        payment.created_at = settled_at
    session.add(payment)
    session.commit()
    return payment


def make_subscription(
    session: Session,
    account: CustomerAccount,
    *,
    frequency: str,
    start: date,
    amount: int | None,
    status: str = "recurring",
    stop_rule: str = "unending",
    total: int | None = None,
    stop_count: int | None = None,
    charged: int = 0,
    amount_charged: int = 0,
    currency: str | None = None,
) -> Subscription:
    sub = Subscription(
        partner_id=account.partner_id,
        customer_account_id=account.id,  # type: ignore[arg-type]
        description=f"{frequency} plan",
        status=status,
        frequency=frequency,
        currency=currency or account.currency,
        total_amount=total,
        manual_amount=amount,
        start_date=start,
        stop_rule=stop_rule,
        stop_count=stop_count,
        recurring_count=charged,
        amount_charged=amount_charged,
    )
    refresh_next_charge_date(sub)
    sub.status = status  # keep the status asked for (refresh may mark it complete)
    session.add(sub)
    session.commit()
    return sub
