"""The dashboard's schedule figures: monthly recurring revenue and the charges expected in
the next days (definitions in :mod:`app.services.dashboard`'s docstring)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from fractions import Fraction
from typing import Final

from sqlmodel import Session, col, func, select

from app.domain.schedule import (
    Frequency,
    Schedule,
    SubscriptionStatus,
    charge_amount,
    upcoming_charges,
)
from app.models import Partner, Subscription

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
class WeekTotal:
    """Charges expected from ``start`` to ``end`` (both included)."""

    start: date
    end: date
    count: int
    amount: int


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
    per schedule as its frequency can fit in the window. When only one can, it is the
    stored next charge date (which the rules derived and the selection already trusts) with
    the rules' charge amount.

    Raises:
        InvalidInput: a stored schedule lacks the field its stop rule needs.
    """
    end = as_of + timedelta(days=days)
    rows = session.exec(
        select(  # the fields of a Schedule, in its order, then the next date and counters
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
    for frequency, start, day, rule, end_date, count, total, manual, first, *counters in rows:
        charged_periods, amount_charged, first_period = counters
        schedule = Schedule(frequency, start, day, rule, end_date, count, total, manual)
        limit = (end - first).days // MIN_GAP_DAYS.get(frequency, 1) + 1
        if limit == 1:  # only the stored next charge (the rules' own date) fits the window
            charges = [(first, charge_amount(schedule, amount_charged=amount_charged))]
        else:
            charges = upcoming_charges(
                schedule,
                charged_periods=charged_periods,
                amount_charged=amount_charged,
                first_period=first_period,
                limit=limit,
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
