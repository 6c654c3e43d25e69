"""Read models of the customer portal's own pages: the dashboard, the invoice list with
its status filter, the payment history with its date range, and an invoice's page.

Every function starts from the signed-in customer's own account (``tenancy.own_account``),
so a user who is not a customer gets NotFound and no query reaches another account. Each
page reads a constant number of queries, whatever the number of rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import Date, cast
from sqlmodel import Session, col, func, select

from app.domain import schedule as rules
from app.domain.errors import FieldsInvalid
from app.models import (
    CustomerAccount,
    Invoice,
    InvoiceStatus,
    Partner,
    Payment,
    PaymentKind,
    PaymentMethod,
    PaymentStatus,
    ScheduledPayment,
    ScheduledStatus,
    Subscription,
    User,
)
from app.services.billing_pages import (
    InvoiceDetail,
    PaymentDetail,
    check_has_receipt,
    customer_invoice_detail,
    customer_payment_detail,
)
from app.services.dashboard import payment_day_between
from app.services.directory import OPEN_STATUSES, Page
from app.services.receipts import payment_method_label
from app.services.schedules import schedule_of
from app.services.tenancy import own_account

RECENT_PAYMENTS: Final = 5
INVOICES_PER_PAGE: Final = 50
PAYMENTS_PER_PAGE: Final = 25
OPEN_START: Final = date(1900, 1, 1)
OPEN_END: Final = date(9000, 1, 1)
# Money a customer paid (or tried to): refunds show on their payment's row, holds
# (authorizations, voids) moved no money.
MONEY_IN: Final = (
    PaymentKind.CHARGE,
    PaymentKind.CAPTURE,
    PaymentKind.CHECK,
    PaymentKind.CASH,
    PaymentKind.BANK_TRANSFER,
)
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
class PaymentLine:
    """A payment as the portal lists it: its day (partner-local), what it paid for, how."""

    payment: Payment
    day: date
    description: str
    label: str
    invoice_id: int | None


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
    account, partner = _own(session, user)
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
    recent = _payment_lines(
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


def _own(session: Session, user: User) -> tuple[CustomerAccount, Partner]:
    account = own_account(session, user)
    partner = session.get(Partner, account.partner_id)
    assert partner is not None
    return account, partner


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


def _payment_lines(
    session: Session, partner: Partner, conditions: list[Any], *, offset: int = 0, limit: int
) -> list[PaymentLine]:
    """Payments matching ``conditions``, newest first, with what each paid for (invoice
    number, subscription), read in one statement."""
    rows = session.exec(
        select(Payment, Invoice.number, Subscription.description)
        .outerjoin(Invoice, col(Invoice.id) == Payment.invoice_id)
        .outerjoin(Subscription, col(Subscription.id) == Payment.subscription_id)
        .where(*conditions)
        .order_by(
            _day_of_payment(session, partner.timezone).desc(),
            col(Payment.created_at).desc(),
            col(Payment.id).desc(),
        )
        .offset(offset)
        .limit(limit)
    ).all()
    zone = ZoneInfo(partner.timezone)
    lines = []
    for payment, number, plan in rows:
        instant = payment.settled_at or payment.created_at
        words = [f"Invoice {number}" if number else "", plan or ""]
        fallback = "Donation" if payment.detail.get("source") == "widget" else "Payment"
        lines.append(
            PaymentLine(
                payment=payment,
                day=payment.received_on or instant.astimezone(zone).date(),
                description=" · ".join(w for w in words if w) or fallback,
                label=payment_method_label(payment),
                invoice_id=payment.invoice_id,
            )
        )
    return lines


def _day_of_payment(session: Session, timezone: str) -> Any:
    """SQL: the payment's day, to list payments by it (the shown day is computed exactly
    in Python): ``received_on``, else the settled (or created) instant's day."""
    instant = func.coalesce(Payment.settled_at, Payment.created_at)
    if session.get_bind().dialect.name == "postgresql":
        return func.coalesce(Payment.received_on, cast(func.timezone(timezone, instant), Date))
    # SQLite keeps instants as UTC text: its UTC day is near enough to order by.
    return func.coalesce(Payment.received_on, func.date(instant))


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


# -- payments --------------------------------------------------------------------------------


class RangeInvalid(FieldsInvalid):
    """A date range with bad fields (``from``, ``to``); nothing was filtered."""


@dataclass(frozen=True)
class PaymentRange:
    """Partner-local days, both included; None leaves that side open."""

    start: date | None = None
    end: date | None = None

    def query_args(self) -> dict[str, str]:
        """The range as query-string arguments (for links that keep it)."""
        args = {"from": self.start.isoformat() if self.start else ""}
        args["to"] = self.end.isoformat() if self.end else ""
        return {name: value for name, value in args.items() if value}


def parse_range(args: Mapping[str, str]) -> PaymentRange:
    """Read ``from`` and ``to`` (YYYY-MM-DD, either may be empty).

    Raises:
        RangeInvalid: a malformed date (on its field), or ``from`` after ``to`` (on "to").
    """
    errors: dict[str, str] = {}
    days: dict[str, date | None] = {}
    for name, word in (("from", "From"), ("to", "To")):
        text = args.get(name, "").strip()
        days[name] = None
        if text:
            try:
                days[name] = date.fromisoformat(text)
            except ValueError:
                errors[name] = f"{word}: enter a date such as 2026-03-31."
    start, end = days["from"], days["to"]
    if start and end and start > end:
        errors["to"] = "The end date cannot be before the start date."
    if errors:
        raise RangeInvalid(errors)
    return PaymentRange(start, end)


@dataclass(frozen=True)
class PaymentHistory:
    range: PaymentRange
    page: Page[PaymentLine]
    partner: Partner


def payment_history(
    session: Session,
    user: User,
    *,
    days: PaymentRange | None = None,
    page: int = 1,
    per_page: int = PAYMENTS_PER_PAGE,
) -> PaymentHistory:
    """The customer's payments (money in, any outcome) newest day first, a page at a time.

    A payment's day is its ``received_on``, else the instant it settled (or was made) read
    in the partner's timezone; ``days`` keeps the payments whose day is in the range,
    both ends included. Refunds show as the refunded amount of their payment.

    Raises:
        NotFound: ``user`` is not a customer.
    """
    account, partner = _own(session, user)
    days = days or PaymentRange()
    conditions = [Payment.customer_account_id == account.id, col(Payment.kind).in_(MONEY_IN)]
    if days.start or days.end:
        # An open side reaches past any stored day (date.min would overflow in UTC+ zones).
        start = days.start or OPEN_START
        end = days.end + timedelta(days=1) if days.end else OPEN_END  # exclusive
        conditions.append(payment_day_between(start, end, partner.timezone))
    total = int(session.exec(select(func.count()).select_from(Payment).where(*conditions)).one())
    page = min(max(1, page), max(1, -(-total // per_page)))
    rows = _payment_lines(
        session, partner, conditions, offset=(page - 1) * per_page, limit=per_page
    )
    return PaymentHistory(days, Page(rows, page, per_page, total), partner)


def portal_receipt(session: Session, user: User, payment_id: int) -> PaymentDetail:
    """The receipt of one of the customer's payments (for its printable page and PDF).

    Raises:
        NotFound: another account's payment, or ``user`` is not a customer.
        Conflict: the payment has no receipt (not approved, or a refund).
    """
    detail = customer_payment_detail(session, user, payment_id)
    check_has_receipt(detail)
    return detail
