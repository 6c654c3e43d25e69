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
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from typing import Any, Final
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, literal, or_, union_all
from sqlmodel import Session, col, func, select

from app.domain.schedule import Frequency, Schedule, SubscriptionStatus, upcoming_charges
from app.models import (
    Invoice,
    InvoiceStatus,
    Partner,
    Payment,
    PaymentKind,
    PaymentStatus,
    Subscription,
    User,
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
EXPECTED_DAYS: Final = 30
# The fewest days between two charge dates of a frequency (a month counts 28: Jan 31 is
# followed by Feb 28), so a window of N days holds at most N // gap + 1 of its charges.
MIN_GAP_DAYS: Final[dict[str, int]] = {
    Frequency.DAILY: 1,
    Frequency.WEEKLY: 7,
    Frequency.BIWEEKLY: 14,
    Frequency.MONTHLY: 28,
    Frequency.BIMONTHLY: 2 * 28,
    Frequency.QUARTERLY: 3 * 28,
    Frequency.SEMIANNUAL: 6 * 28,
    Frequency.ANNUAL: 12 * 28,
    Frequency.BIENNIAL: 24 * 28,
}
PER_MONTH: Final[dict[str, Fraction]] = {
    Frequency.DAILY: Fraction(365, 12),
    Frequency.WEEKLY: Fraction(52, 12),
    Frequency.BIWEEKLY: Fraction(26, 12),
    Frequency.MONTHLY: Fraction(1),
    Frequency.BIMONTHLY: Fraction(1, 2),
    Frequency.QUARTERLY: Fraction(1, 3),
    Frequency.SEMIANNUAL: Fraction(1, 6),
    Frequency.ANNUAL: Fraction(1, 12),
    Frequency.BIENNIAL: Fraction(1, 24),
}


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
class WeekTotal:
    """Charges expected from ``start`` to ``end`` (both included)."""

    start: date
    end: date
    count: int
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
    ``received_on`` day in the months are one range of ``ix_payment_partner_received``
    (read from the index alone on PostgreSQL), those without one (rare: approved payments
    get their day) a second range of it; each row is given its month's index and the
    amounts are summed per index. Raises nothing.
    """
    starts = month_starts(as_of, months)
    zone = ZoneInfo(partner.timezone)
    midnights = [_local_midnight(day, zone) for day in starts]
    signed = case(
        (Payment.kind == PaymentKind.REFUND, -col(Payment.amount)), else_=col(Payment.amount)
    ).label("amount")
    money_in = (
        Payment.partner_id == partner.id,
        Payment.status == PaymentStatus.APPROVED,
        Payment.currency == partner.currency,
        col(Payment.kind).in_((*MONEY_IN_KINDS, PaymentKind.REFUND)),
    )
    received = col(Payment.received_on)
    instant = func.coalesce(Payment.settled_at, Payment.created_at)
    by_day = select(_month_index(received, starts), signed).where(
        *money_in, received >= starts[0], received < starts[-1]
    )
    by_instant = select(_month_index(instant, midnights), signed).where(
        *money_in, received.is_(None), instant >= midnights[0], instant < midnights[-1]
    )
    rows = union_all(by_day, by_instant).subquery()
    totals = dict(
        session.exec(select(rows.c.month, func.sum(rows.c.amount)).group_by(rows.c.month)).all()
    )
    return [MonthTotal(month, int(totals.get(i) or 0)) for i, month in enumerate(starts[:-1])]


def _month_index(value: Any, bounds: list[Any]) -> Any:
    """SQL: the index ``i`` of the month ``bounds[i]`` … ``bounds[i + 1]`` holding ``value``
    (which the caller has kept within ``bounds[0]`` … ``bounds[-1]``). Raises nothing."""
    whens = [(value < bound, i) for i, bound in enumerate(bounds[1:-1])]
    return (case(*whens, else_=len(bounds) - 2) if whens else literal(0)).label("month")


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


def monthly_recurring_revenue(session: Session, partner: Partner) -> int:
    """Recurring schedules' fixed installments normalised to a month (see module doc).

    One statement grouped by frequency. Raises nothing.
    """
    rows = session.exec(
        select(Subscription.frequency, func.sum(Subscription.manual_amount))
        .where(
            Subscription.partner_id == partner.id,
            Subscription.currency == partner.currency,
            Subscription.status == SubscriptionStatus.RECURRING,
            col(Subscription.manual_amount).is_not(None),
            col(Subscription.next_charge_date).is_not(None),
        )
        .group_by(Subscription.frequency)
    ).all()
    return round_half_up(
        sum((int(t) * PER_MONTH.get(f, Fraction(0)) for f, t in rows), Fraction(0))
    )


def round_half_up(value: Fraction) -> int:
    """Round to the nearest integer, ties away from zero. Raises nothing."""
    magnitude = (2 * abs(value.numerator) + value.denominator) // (2 * value.denominator)
    return -magnitude if value < 0 else magnitude


def expected_by_week(
    session: Session, partner: Partner, *, as_of: date, days: int = EXPECTED_DAYS
) -> list[WeekTotal]:
    """Charges the recurring schedules will take in ``as_of`` … ``as_of + days - 1``, by week.

    Weeks start on ``as_of``; the last one is cut at the window's end. One statement
    reads the schedule columns of the subscriptions with a next charge in the window (plain
    rows, not ORM objects); the periods come from the pure schedule rules, at most as many
    per schedule as its frequency can fit in the window.

    Raises:
        InvalidInput: a stored schedule lacks the field its stop rule needs.
    """
    end = as_of + timedelta(days=days)
    rows = session.exec(
        select(
            Subscription.frequency,
            Subscription.start_date,
            Subscription.charge_day,
            Subscription.stop_rule,
            Subscription.end_date,
            Subscription.stop_count,
            Subscription.total_amount,
            Subscription.manual_amount,
            Subscription.next_charge_date,
            Subscription.recurring_count,
            Subscription.amount_charged,
            Subscription.first_period,
        ).where(
            Subscription.partner_id == partner.id,
            Subscription.currency == partner.currency,
            Subscription.status == SubscriptionStatus.RECURRING,
            col(Subscription.next_charge_date).is_not(None),
            col(Subscription.next_charge_date) < end,
        )
    ).all()
    weeks = [
        [as_of + timedelta(days=d), as_of + timedelta(days=min(d + 6, days - 1)), 0, 0]
        for d in range(0, days, 7)
    ]
    for row in rows:
        schedule = Schedule(
            frequency=row.frequency,
            start_date=row.start_date,
            charge_day=row.charge_day,
            stop_rule=row.stop_rule,
            end_date=row.end_date,
            stop_count=row.stop_count,
            total_amount=row.total_amount,
            manual_amount=row.manual_amount,
        )
        charges = upcoming_charges(
            schedule,
            charged_periods=row.recurring_count,
            amount_charged=row.amount_charged,
            first_period=row.first_period,
            limit=(end - row.next_charge_date).days // MIN_GAP_DAYS.get(row.frequency, 1) + 1,
        )
        for when, amount in charges:
            if when >= end:
                break
            if amount <= 0:
                continue
            week = weeks[max(0, (when - as_of).days) // 7]
            week[2] += 1
            week[3] += amount
    return [WeekTotal(a, b, n, amount) for a, b, n, amount in weeks]
