"""Read models for the landing pages: partners, customer lists, an account overview.

Each list is one query with aggregates, never a query per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Generic, TypeVar

from sqlalchemy import case
from sqlmodel import Session, col, func, or_, select

from app.domain.schedule import SubscriptionStatus
from app.models import (
    CustomerAccount,
    Invoice,
    InvoiceStatus,
    Partner,
    PaymentMethod,
    Subscription,
    User,
)
from app.services.tenancy import customer_for, own_account, partner_id_of

T = TypeVar("T")

# Balances count open invoices only. A canceled invoice and its cancellation invoice
# (same lines, negative) net to zero, so leaving both out equals counting both; a paid
# invoice reopened by a refund is ``created``/``overdue`` again and counts.
OPEN_STATUSES = (InvoiceStatus.CREATED, InvoiceStatus.OVERDUE)


@dataclass(frozen=True)
class PartnerRow:
    partner: Partner
    customer_count: int
    outstanding: int


@dataclass(frozen=True)
class CustomerRow:
    account: CustomerAccount
    balance_due: int
    next_charge_date: date | None


@dataclass(frozen=True)
class Page(Generic[T]):
    rows: list[T]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


@dataclass(frozen=True)
class AccountOverview:
    account: CustomerAccount
    partner: Partner
    balance_due: int
    payment_methods: list[PaymentMethod]
    subscriptions: list[Subscription]
    invoices: list[Invoice]


def _balances():  # noqa: ANN202
    return (
        select(
            Invoice.customer_account_id.label("account_id"),
            func.coalesce(func.sum(Invoice.total - Invoice.amount_paid), 0).label("balance"),
        )
        .where(col(Invoice.status).in_(OPEN_STATUSES))
        .group_by(Invoice.customer_account_id)
        .subquery()
    )


def list_partners(session: Session) -> list[PartnerRow]:
    """Every partner with its customer count and outstanding balance (operators only)."""
    balances = _balances()
    rows = session.exec(
        select(
            Partner,
            func.count(CustomerAccount.id),
            func.coalesce(func.sum(balances.c.balance), 0),
        )
        .outerjoin(CustomerAccount, CustomerAccount.partner_id == Partner.id)
        .outerjoin(balances, balances.c.account_id == CustomerAccount.id)
        .group_by(Partner.id)
        .order_by(Partner.name)
    ).all()
    return [PartnerRow(p, int(n), int(b)) for p, n, b in rows]


def list_customers(
    session: Session, user: User, *, search: str = "", page: int = 1, per_page: int = 25
) -> Page[CustomerRow]:
    """The partner user's customers with balance due and next charge date, paginated.

    Raises NotFound when ``user`` is not a partner user.
    """
    partner_id = partner_id_of(user)
    balances = _balances()
    next_dates = (
        select(
            Subscription.customer_account_id.label("account_id"),
            func.min(
                case(
                    (
                        Subscription.status == SubscriptionStatus.RECURRING,
                        Subscription.next_charge_date,
                    ),
                    else_=None,
                )
            ).label("next_date"),
        )
        .where(Subscription.partner_id == partner_id)
        .group_by(Subscription.customer_account_id)
        .subquery()
    )
    filters = [CustomerAccount.partner_id == partner_id]
    if search.strip():
        # Escape LIKE wildcards so "50%" or "a_b" match literally.
        term = search.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{term}%"
        filters.append(
            or_(
                func.lower(CustomerAccount.name).like(pattern, escape="\\"),
                func.lower(CustomerAccount.email).like(pattern, escape="\\"),
            )
        )
    total = session.exec(select(func.count()).select_from(CustomerAccount).where(*filters)).one()
    page = max(1, page)
    rows = session.exec(
        select(CustomerAccount, func.coalesce(balances.c.balance, 0), next_dates.c.next_date)
        .outerjoin(balances, balances.c.account_id == CustomerAccount.id)
        .outerjoin(next_dates, next_dates.c.account_id == CustomerAccount.id)
        .where(*filters)
        .order_by(CustomerAccount.name, CustomerAccount.id)
        .offset((page - 1) * per_page)
        .limit(per_page)
    ).all()
    return Page(
        rows=[CustomerRow(a, int(b), _as_date(d)) for a, b, d in rows],
        page=page,
        per_page=per_page,
        total=int(total),
    )


def _as_date(value: object) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value))  # SQLite returns aggregates of dates as text


def account_overview(
    session: Session, user: User, customer_id: int | None = None
) -> AccountOverview:
    """One account with its methods, subscriptions and invoices.

    Without ``customer_id`` a customer gets their own account. With it, anyone gets that
    account only if they may see it (a customer only their own). Raises NotFound otherwise.
    """
    if customer_id is None:
        account = own_account(session, user)
    else:
        account = customer_for(session, user, customer_id)
    partner = session.get(Partner, account.partner_id)
    methods = session.exec(
        select(PaymentMethod)
        .where(PaymentMethod.customer_account_id == account.id)
        .order_by(col(PaymentMethod.is_default).desc(), PaymentMethod.id)
    ).all()
    subscriptions = session.exec(
        select(Subscription)
        .where(Subscription.customer_account_id == account.id)
        .order_by(Subscription.id)
    ).all()
    invoices = session.exec(
        select(Invoice)
        .where(Invoice.customer_account_id == account.id)
        .order_by(col(Invoice.issue_date).desc(), col(Invoice.id).desc())
    ).all()
    balance = sum(inv.balance for inv in invoices if inv.status in OPEN_STATUSES)
    assert partner is not None
    return AccountOverview(
        account, partner, balance, list(methods), list(subscriptions), list(invoices)
    )
