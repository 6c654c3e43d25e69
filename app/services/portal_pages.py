"""Read models of the customer portal's own pages: the dashboard, the invoice list with
its status filter, and an invoice's page (payments: ``portal_payments``).

Every function starts from the signed-in customer's own account (``tenancy.own_account``),
so a user who is not a customer gets NotFound and no query reaches another account. Each
page reads a constant number of queries, whatever the number of rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Final

from sqlmodel import Session, col, func, select

from app.domain import schedule as rules
from app.models import (
    CustomerAccount,
    Invoice,
    InvoiceStatus,
    Partner,
    Payment,
    PaymentMethod,
    PaymentStatus,
    ScheduledPayment,
    ScheduledStatus,
    Subscription,
    User,
)
from app.services.billing_pages import (
    InvoiceDetail,
    customer_invoice_detail,
)
from app.services.directory import OPEN_STATUSES, Page
from app.services.portal_payments import (
    MONEY_IN,
    PaymentLine,
    customer_and_partner,
    payment_lines,
)
from app.services.schedules import schedule_of
from app.services.tenancy import own_account

RECENT_PAYMENTS: Final = 5
INVOICES_PER_PAGE: Final = 50
# The invoice list's tabs: query value → (label, statuses; empty means every status).
INVOICE_FILTERS: Final[dict[str, tuple[str, tuple[str, ...]]]] = {
    "all": ("All", ()),
    "open": ("Open", (InvoiceStatus.CREATED, InvoiceStatus.OVERDUE)),
    "overdue": ("Overdue", (InvoiceStatus.OVERDUE,)),
    "paid": ("Paid", (InvoiceStatus.PAID,)),
    "canceled": ("Canceled", (InvoiceStatus.CANCELED, InvoiceStatus.CANCELLATION)),
}
# What an invoice's page lists of its scheduled payments (a canceled one is history).
SHOWN_SCHEDULED: Final = (
    ScheduledStatus.SCHEDULED,
    ScheduledStatus.PROCESSING,
    ScheduledStatus.FAILED,
    ScheduledStatus.PAID,
)


# -- the dashboard ---------------------------------------------------------------------------


@dataclass(frozen=True)
class UpcomingCharge:
    """A payment the customer can expect: a subscription's next charge, or a payment of
    an invoice they scheduled. ``method`` is what it will be charged to (None: no method
    on file)."""

    on: date
    amount: int
    currency: str
    description: str
    method: PaymentMethod | None
    subscription: Subscription | None = None
    scheduled: ScheduledPayment | None = None
    invoice_id: int | None = None


@dataclass(frozen=True)
class Dashboard:
    account: CustomerAccount
    partner: Partner
    balance_due: int
    open_invoices: list[Invoice]
    upcoming: list[UpcomingCharge]
    recent_payments: list[PaymentLine]
    in_error: list[Subscription]  # subscriptions whose last charge was declined


def dashboard(session: Session, user: User) -> Dashboard:
    """The customer's dashboard: balance due, open invoices, the upcoming payment schedule
    (each ``recurring`` subscription's next charge and every ``scheduled`` invoice payment,
    by date), the last few approved or declined payments, and subscriptions in ``error``.

    A subscription's next amount is ``charge_amount`` of its schedule, so under a
    ``balance_due`` stop rule the last charge is the smaller balance. Seven queries
    whatever the account holds.

    Raises:
        NotFound: ``user`` is not a customer.
    """
    account, partner = customer_and_partner(session, user)
    invoices = session.exec(
        select(Invoice)
        .where(Invoice.customer_account_id == account.id, col(Invoice.status).in_(OPEN_STATUSES))
        .order_by(Invoice.due_date, Invoice.id)
    ).all()
    methods = _methods(session, account)
    subscriptions = session.exec(
        select(Subscription)
        .where(Subscription.customer_account_id == account.id)
        .order_by(Subscription.id)
    ).all()
    upcoming = [
        UpcomingCharge(
            on=sub.next_charge_date,
            amount=rules.charge_amount(schedule_of(sub), amount_charged=sub.amount_charged),
            currency=sub.currency,
            description=sub.description,
            method=_method(methods, sub.payment_method_id),
            subscription=sub,
        )
        for sub in subscriptions
        if sub.status == rules.SubscriptionStatus.RECURRING and sub.next_charge_date is not None
    ]
    scheduled = session.exec(
        select(ScheduledPayment, Invoice.number)
        .join(Invoice, col(Invoice.id) == ScheduledPayment.invoice_id)
        .where(
            ScheduledPayment.customer_account_id == account.id,
            ScheduledPayment.status == ScheduledStatus.SCHEDULED,
        )
    ).all()
    upcoming += [
        UpcomingCharge(
            on=row.pay_on,
            amount=row.amount,
            currency=row.currency,
            description=f"Invoice {number}",
            method=_method(methods, row.payment_method_id),
            scheduled=row,
            invoice_id=row.invoice_id,
        )
        for row, number in scheduled
    ]
    upcoming.sort(key=lambda c: (c.on, c.scheduled is not None, c.description))
    recent = payment_lines(
        session,
        partner,
        [
            Payment.customer_account_id == account.id,
            col(Payment.kind).in_(MONEY_IN),
            col(Payment.status).in_((PaymentStatus.APPROVED, PaymentStatus.DECLINED)),
        ],
        limit=RECENT_PAYMENTS,
    )
    return Dashboard(
        account=account,
        partner=partner,
        balance_due=sum(inv.balance for inv in invoices),
        open_invoices=[inv for inv in invoices if inv.balance > 0],
        upcoming=upcoming,
        recent_payments=recent,
        in_error=[s for s in subscriptions if s.status == rules.SubscriptionStatus.ERROR],
    )


def _methods(session: Session, account: CustomerAccount) -> list[PaymentMethod]:
    """The account's methods, default first then oldest (the order ``default_method`` uses)."""
    return list(
        session.exec(
            select(PaymentMethod)
            .where(PaymentMethod.customer_account_id == account.id)
            .order_by(col(PaymentMethod.is_default).desc(), PaymentMethod.id)
        ).all()
    )


def _method(methods: list[PaymentMethod], method_id: int | None) -> PaymentMethod | None:
    """The method a charge will use, picked as ``subscription_access.method_of`` does
    (its own method, else the account's default), from methods already read: one query
    for the page instead of one per row."""
    for method in methods:
        if method.id == method_id:
            return method
    return methods[0] if methods else None


# -- invoices --------------------------------------------------------------------------------


@dataclass(frozen=True)
class InvoiceList:
    status: str  # a key of INVOICE_FILTERS
    page: Page[Invoice]
    counts: dict[str, int]  # invoices per filter key, for the tabs


def invoice_filter(value: str) -> str:
    """The filter key for a ``?status=`` value; an unknown or empty value reads as "all",
    so a hand-edited address never fails. Raises nothing."""
    value = value.strip().lower()
    return value if value in INVOICE_FILTERS else "all"


def invoice_list(
    session: Session,
    user: User,
    *,
    status: str = "all",
    page: int = 1,
    per_page: int = INVOICES_PER_PAGE,
) -> InvoiceList:
    """The customer's invoices of one filter (``INVOICE_FILTERS``), newest first, a page
    at a time (a page past the end shows the last), with the count of every filter.

    Raises:
        NotFound: ``user`` is not a customer.
    """
    account = own_account(session, user)
    status = invoice_filter(status)
    per_status = dict(
        session.exec(
            select(Invoice.status, func.count())
            .where(Invoice.customer_account_id == account.id)
            .group_by(Invoice.status)
        ).all()
    )
    counts = {
        key: sum(n for s, n in per_status.items() if not statuses or s in statuses)
        for key, (_, statuses) in INVOICE_FILTERS.items()
    }
    conditions = [Invoice.customer_account_id == account.id]
    if INVOICE_FILTERS[status][1]:
        conditions.append(col(Invoice.status).in_(INVOICE_FILTERS[status][1]))
    total = counts[status]
    page = min(max(1, page), max(1, -(-total // per_page)))
    rows = session.exec(
        select(Invoice)
        .where(*conditions)
        .order_by(col(Invoice.issue_date).desc(), col(Invoice.id).desc())
        .offset((page - 1) * per_page)
        .limit(per_page)
    ).all()
    return InvoiceList(status, Page(list(rows), page, per_page, total), counts)


@dataclass(frozen=True)
class PortalInvoice:
    """An invoice's portal page: the shared detail and its scheduled payments."""

    detail: InvoiceDetail
    scheduled: list[ScheduledPayment]


def portal_invoice(session: Session, user: User, invoice_id: int) -> PortalInvoice:
    """One of the customer's invoices with its scheduled payments (scheduled, processing,
    failed or paid; earliest first).

    Raises:
        NotFound: another account's invoice, or ``user`` is not a customer.
    """
    detail = customer_invoice_detail(session, user, invoice_id)
    scheduled = session.exec(
        select(ScheduledPayment)
        .where(
            ScheduledPayment.invoice_id == detail.invoice.id,
            col(ScheduledPayment.status).in_(SHOWN_SCHEDULED),
        )
        .order_by(ScheduledPayment.pay_on, ScheduledPayment.id)
    ).all()
    return PortalInvoice(detail, list(scheduled))
