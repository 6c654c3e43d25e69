"""The partner dashboard's figures, each from one aggregate query (no query per row).

Definitions (every amount is integer minor units of the partner's currency; rows in any
other currency are left out of every figure):

- **Collected** in a month: approved money-in payments (charge, capture, check, cash,
  bank transfer) minus approved refunds. Authorizations and voids move no money and do
  not count. A payment counts on its ``received_on`` day (the day the money came: set for
  manual payments by the person recording them, for processor payments when the answer
  came); a payment without one counts at its settled (else created) instant, read in the
  partner's timezone. Months are the partner's local calendar months.
- **Outstanding**: the unpaid balance (total minus amount paid) of ``created`` and
  ``overdue`` invoices.
- **Overdue**: an ``overdue`` invoice, or a ``created`` one whose due date has passed (the
  dunning sweep may not have marked it yet). Its age is ``as_of - due_date`` in days:
  1–30, 31–60, 61–90 and over 90 (day 30 is in the first bucket, day 31 in the second).
  An invoice marked overdue with a due date not yet passed counts as 1 day old.
- **Monthly recurring revenue**: the fixed installments (``manual_amount``) of
  ``recurring`` schedules that still have a next charge, normalised to a month: daily
  ×365/12, weekly ×52/12, biweekly ×26/12, monthly ×1, bimonthly /2, quarterly /3,
  semiannual /6, annual /12, biennial /24. Schedules that follow their balance due (no
  fixed installment) or charge once are not recurring revenue. The exact sum of fractions
  is rounded once, half-up, to the minor unit.
- **Expected charges**: what the schedules of ``recurring`` subscriptions will charge in
  the 30 days ``as_of`` … ``as_of + 29`` if every charge is approved, period by period
  (``app.domain.schedule.upcoming_charges``, which honours stop rules and the last
  installment of a balance). A period still owed from before ``as_of`` is expected today.

The last two are computed in :mod:`app.services.dashboard_schedules`.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import Date, and_, case, cast, null, or_, union_all
from sqlmodel import Session, col, func, select

from app.models import (
    Invoice,
    InvoiceStatus,
    Partner,
    Payment,
    PaymentKind,
    PaymentStatus,
    User,
)
from app.models.base import UTCDateTime
from app.services.dashboard_schedules import (
    EXPECTED_DAYS,
    WeekTotal,
    expected_by_week,
    monthly_recurring_revenue,
    round_half_up,
)
from app.services.tenancy import partner_of

MONEY_IN_KINDS: Final = (
    PaymentKind.CHARGE,
    PaymentKind.CAPTURE,
    PaymentKind.CHECK,
    PaymentKind.CASH,
    PaymentKind.BANK_TRANSFER,
)
OPEN_STATUSES: Final = (InvoiceStatus.CREATED, InvoiceStatus.OVERDUE)
AGING: Final = ((1, 30, "1–30 days"), (31, 60, "31–60 days"), (61, 90, "61–90 days"))
OVER_90: Final = "90+ days"
MONTHS_SHOWN: Final = 6


@dataclass(frozen=True)
class AgingBucket:
    """Overdue invoices ``low``…``high`` days past due (``high`` None: no upper end)."""

    label: str
    low: int
    high: int | None
    count: int
    amount: int


@dataclass(frozen=True)
class MonthTotal:
    """Money collected in the local month starting on ``month``."""

    month: date
    amount: int


@dataclass(frozen=True)
class Dashboard:
    """Every figure of the partner dashboard on the partner-local day ``as_of``."""

    partner: Partner
    as_of: date
    currency: str
    collected_by_month: list[MonthTotal]
    outstanding: int
    outstanding_count: int
    overdue: list[AgingBucket]
    mrr: int
    expected_by_week: list[WeekTotal]

    @property
    def collected_this_month(self) -> int:
        return self.collected_by_month[-1].amount

    @property
    def overdue_amount(self) -> int:
        return sum(b.amount for b in self.overdue)

    @property
    def overdue_count(self) -> int:
        return sum(b.count for b in self.overdue)

    @property
    def expected_count(self) -> int:
        return sum(w.count for w in self.expected_by_week)

    @property
    def expected_amount(self) -> int:
        return sum(w.amount for w in self.expected_by_week)


def dashboard(session: Session, user: User, *, as_of: date) -> Dashboard:
    """All dashboard figures for the partner user's partner on its local day ``as_of``.

    Runs a constant number of statements whatever the number of rows (one per figure).

    Raises:
        NotFound: ``user`` is not a partner user.
    """
    partner = partner_of(session, user)
    invoices = invoice_figures(session, partner, as_of=as_of)
    return Dashboard(
        partner=partner,
        as_of=as_of,
        currency=partner.currency,
        collected_by_month=collected_by_month(session, partner, as_of=as_of),
        outstanding=invoices.outstanding,
        outstanding_count=invoices.outstanding_count,
        overdue=invoices.overdue,
        mrr=monthly_recurring_revenue(session, partner),
        expected_by_week=expected_by_week(session, partner, as_of=as_of),
    )


def month_starts(as_of: date, months: int = MONTHS_SHOWN) -> list[date]:
    """The first days of the ``months`` months ending with ``as_of``'s, plus the next one.

    ``month_starts(date(2026, 2, 10), 2)`` is ``[Jan 1, Feb 1, Mar 1]``. Raises nothing.
    """
    index = as_of.year * 12 + as_of.month - 1
    return [date(i // 12, i % 12 + 1, 1) for i in range(index - months + 1, index + 2)]


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant at which ``day`` starts in ``zone``."""
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def payment_day_between(start: date, end: date, timezone: str) -> Any:
    """SQL condition: the payment's day is within ``start`` (included) … ``end`` (excluded).

    The day is ``received_on``, else the settled (or created) instant in ``timezone``.
    Raises nothing.
    """
    zone = ZoneInfo(timezone)
    instant = func.coalesce(Payment.settled_at, Payment.created_at)
    return or_(
        and_(
            col(Payment.received_on).is_not(None),
            col(Payment.received_on) >= start,
            col(Payment.received_on) < end,
        ),
        and_(
            col(Payment.received_on).is_(None),
            instant >= _local_midnight(start, zone),
            instant < _local_midnight(end, zone),
        ),
    )


def collected_by_month(
    session: Session, partner: Partner, *, as_of: date, months: int = MONTHS_SHOWN
) -> list[MonthTotal]:
    """Net money collected in each of the last ``months`` local months, oldest first.

    The last entry is the month of ``as_of`` (so far). One statement: the payments with a
    ``received_on`` day in the months are one range of ``ix_payment_partner_received``,
    summed per day in the index's order (read from the index alone); those without one
    (rare: approved payments get their day) are a second range of it, read row by row.
    The days are added up per month here. Raises nothing.
    """
    starts = month_starts(as_of, months)
    zone = ZoneInfo(partner.timezone)
    signed = case(
        (Payment.kind == PaymentKind.REFUND, -col(Payment.amount)), else_=col(Payment.amount)
    )
    money_in = (
        Payment.partner_id == partner.id,
        Payment.status == PaymentStatus.APPROVED,
        Payment.currency == partner.currency,
        col(Payment.kind).in_((*MONEY_IN_KINDS, PaymentKind.REFUND)),
    )
    received = col(Payment.received_on)
    instant = func.coalesce(Payment.settled_at, Payment.created_at)
    by_day = (
        select(received.label("day"), cast(null(), UTCDateTime()).label("at"), func.sum(signed))
        .where(*money_in, received >= starts[0], received < starts[-1])
        .group_by(received)
    )
    by_instant = select(cast(null(), Date), instant, signed).where(
        *money_in,
        received.is_(None),
        instant >= _local_midnight(starts[0], zone),
        instant < _local_midnight(starts[-1], zone),
    )
    totals = [0] * months
    for day, at, amount in session.exec(union_all(by_day, by_instant)).all():  # type: ignore[call-overload]
        if day is None:
            day = at.astimezone(zone).date()
        totals[bisect_right(starts, day) - 1] += int(amount)
    return [MonthTotal(month, total) for month, total in zip(starts, totals, strict=False)]


def overdue_invoice(as_of: date) -> Any:
    """SQL condition: the invoice is overdue on ``as_of`` (marked so, or created and past
    its due date). Raises nothing."""
    return or_(
        Invoice.status == InvoiceStatus.OVERDUE,
        and_(Invoice.status == InvoiceStatus.CREATED, col(Invoice.due_date) < as_of),
    )


@dataclass(frozen=True)
class InvoiceFigures:
    """The open invoices' count and balance, and the overdue ones by age."""

    outstanding_count: int
    outstanding: int
    overdue: list[AgingBucket]


def invoice_figures(session: Session, partner: Partner, *, as_of: date) -> InvoiceFigures:
    """Outstanding (count and balance) and the overdue aging buckets, in one statement.

    Raises nothing.
    """
    balance = col(Invoice.total) - col(Invoice.amount_paid)
    overdue = overdue_invoice(as_of)
    edges = [
        (low, high, label, and_(overdue, *_due_within(as_of, low, high)))
        for low, high, label in (*AGING, (91, None, OVER_90))
    ]
    columns = [func.count(), func.coalesce(func.sum(balance), 0)]
    for *_, condition in edges:
        columns.append(func.coalesce(func.sum(case((condition, 1), else_=0)), 0))
        columns.append(func.coalesce(func.sum(case((condition, balance), else_=0)), 0))
    row = session.exec(
        select(*columns).where(
            Invoice.partner_id == partner.id,
            Invoice.currency == partner.currency,
            col(Invoice.status).in_(OPEN_STATUSES),
        )
    ).one()
    buckets = [
        AgingBucket(label, low, high, int(row[2 + 2 * i]), int(row[3 + 2 * i]))
        for i, (low, high, label, _) in enumerate(edges)
    ]
    return InvoiceFigures(int(row[0]), int(row[1]), buckets)


def _due_within(as_of: date, low: int, high: int | None) -> list[Any]:
    """Conditions for ``low`` <= days past due <= ``high`` (the first bucket has no lower end)."""
    conditions: list[Any] = []
    if high is not None:
        conditions.append(col(Invoice.due_date) >= as_of - timedelta(days=high))
    if low > 1:
        conditions.append(col(Invoice.due_date) <= as_of - timedelta(days=low))
    return conditions


__all__ = [  # the schedule figures live in dashboard_schedules; importable from here too
    "AGING", "EXPECTED_DAYS", "MONEY_IN_KINDS", "MONTHS_SHOWN", "OPEN_STATUSES", "OVER_90",
    "AgingBucket", "Dashboard", "InvoiceFigures", "MonthTotal", "WeekTotal", "collected_by_month",
    "dashboard", "expected_by_week", "invoice_figures", "month_starts", "monthly_recurring_revenue",
    "overdue_invoice", "payment_day_between", "round_half_up",
]  # fmt: skip
