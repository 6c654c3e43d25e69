"""Payment schedule rules: when a subscription charges, how much, and when it stops.

Pure functions over a frozen ``Schedule``; "today" is always an argument.

Periods are numbered from 0. Period ``n`` has the date ``nth_charge_date(schedule, n)``,
computed from the anchor (start date, or the first charge day on or after it), never from
the previous charge, so dates do not drift: Jan 31 -> Feb 28 -> Mar 31 -> Apr 30.

The caller keeps three numbers for a subscription:

- ``charged_periods``: approved recurring charges taken (one per period, ever);
- ``amount_charged``: what counts against the total (approved charges of any kind, minus
  refunds: the seed's "transaction total");
- ``first_period``: the offset of the period numbering: positive for periods skipped
  without a charge, e.g. when a paused schedule resumes (``first_period =
  period_index_on_or_after(schedule, as_of) - charged_periods`` when that is larger than
  the current value) or a person skips the next charge; negative when the schedule was
  restarted after charges were taken (a new start date whose first period is next), so
  the charges already taken do not push the next one further.

The next period to charge is always ``first_period + charged_periods``.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from typing import Final, Literal

from app.domain.errors import InvalidInput

__all__ = [
    "Frequency",
    "Schedule",
    "StopRule",
    "SubscriptionStatus",
    "balance_due",
    "charge_amount",
    "ensure_valid",
    "next_charge_date",
    "nth_charge_date",
    "payment_received",
    "period_index_on_or_after",
    "upcoming_charges",
    "validate",
]


class Frequency(StrEnum):
    """How often a schedule charges."""

    ONCE = "once"
    DAILY = "daily"
    WEEKLY = "weekly"
    BIWEEKLY = "biweekly"
    MONTHLY = "monthly"
    BIMONTHLY = "bimonthly"
    QUARTERLY = "quarterly"
    SEMIANNUAL = "semiannual"
    ANNUAL = "annual"
    BIENNIAL = "biennial"


class StopRule(StrEnum):
    """What ends a schedule."""

    DATE = "date"
    COUNT = "count"
    BALANCE_DUE = "balance_due"
    UNENDING = "unending"


class SubscriptionStatus(StrEnum):
    """Lifecycle of a subscription; only ``recurring`` is picked up by the billing run."""

    RECURRING = "recurring"
    ERROR = "error"
    STOPPED = "stopped"
    COMPLETE = "complete"
    SUSPENDED = "suspended"


_DAYS: Final[dict[Frequency, int]] = {
    Frequency.DAILY: 1,
    Frequency.WEEKLY: 7,
    Frequency.BIWEEKLY: 14,
}
_MONTHS: Final[dict[Frequency, int]] = {
    Frequency.MONTHLY: 1,
    Frequency.BIMONTHLY: 2,
    Frequency.QUARTERLY: 3,
    Frequency.SEMIANNUAL: 6,
    Frequency.ANNUAL: 12,
    Frequency.BIENNIAL: 24,
}


@dataclass(frozen=True, slots=True)
class Schedule:
    """A subscription's payment schedule; amounts are minor units of its currency.

    ``frequency`` and ``stop_rule`` also accept their string values (as stored in the
    database) and are converted to the enums; an unknown value raises InvalidInput.
    Other fields are not checked here: call ``validate`` or ``ensure_valid``.
    """

    frequency: Frequency
    start_date: date
    charge_day: int | None = None
    stop_rule: StopRule = StopRule.UNENDING
    end_date: date | None = None
    stop_count: int | None = None
    total_amount: int | None = None
    manual_amount: int | None = None

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "frequency", Frequency(self.frequency))
        except ValueError:
            raise InvalidInput("Choose how often to charge.", "frequency") from None
        try:
            object.__setattr__(self, "stop_rule", StopRule(self.stop_rule))
        except ValueError:
            raise InvalidInput("Choose when the payments stop.", "stop_rule") from None


def validate(schedule: Schedule, *, is_new: bool, as_of: date) -> list[tuple[str, str]]:
    """Return every problem with ``schedule`` as ``(field, plain message)``; [] when valid.

    ``as_of`` is today in the partner's timezone; a new schedule may not start before it.
    Fields are the ``Schedule`` attribute names. Raises nothing.
    """
    s = schedule
    problems: list[tuple[str, str]] = []
    if s.charge_day is not None:
        if s.frequency not in _MONTHS:
            problems.append(
                ("charge_day", "A charge day can only be set for monthly or longer schedules.")
            )
        elif not 1 <= s.charge_day <= 31:
            problems.append(("charge_day", "Choose a charge day between 1 and 31."))
    if s.stop_rule is StopRule.DATE:
        if s.end_date is None:
            problems.append(("end_date", "Enter the date the payments end."))
        elif s.end_date < s.start_date:
            problems.append(("end_date", "The end date must be on or after the start date."))
        elif not problems and nth_charge_date(s, 0) > s.end_date:
            first = nth_charge_date(s, 0).isoformat()
            problems.append(("end_date", f"The end date is before the first charge on {first}."))
    if s.stop_rule is StopRule.COUNT and (s.stop_count is None or s.stop_count < 1):
        problems.append(("stop_count", "Enter how many payments to take (1 or more)."))
    total_flagged = False
    if s.stop_rule is StopRule.BALANCE_DUE and (s.total_amount is None or s.total_amount <= 0):
        problems.append(("total_amount", "Enter a total above zero to stop when it is paid."))
        total_flagged = True
    elif s.total_amount is not None and s.total_amount < 0:
        problems.append(("total_amount", "The total cannot be negative."))
        total_flagged = True
    if s.manual_amount is None:
        if not total_flagged and not s.total_amount:
            problems.append(("manual_amount", "Enter a charge amount or a total."))
    elif s.manual_amount <= 0:
        problems.append(("manual_amount", "Enter a charge amount above zero."))
    if is_new and s.start_date < as_of:
        problems.append(("start_date", "The start date cannot be in the past."))
    return problems


def ensure_valid(schedule: Schedule, *, is_new: bool, as_of: date) -> None:
    """Check ``schedule`` as ``validate`` does.

    Raises:
        InvalidInput: the first problem, with its message and field.
    """
    problems = validate(schedule, is_new=is_new, as_of=as_of)
    if problems:
        field, message = problems[0]
        raise InvalidInput(message, field)


def _add_months(year: int, month: int, months: int, day: int) -> date:
    """The ``day`` of the month ``months`` after (year, month), clamped to its last day."""
    index = year * 12 + (month - 1) + months
    y, m = divmod(index, 12)
    if not date.min.year <= y <= date.max.year:
        raise OverflowError("charge date out of range")
    return date(y, m + 1, min(day, calendar.monthrange(y, m + 1)[1]))


def _anchor(schedule: Schedule) -> date:
    """Period 0: the start date, or the first charge day on or after it."""
    start, day = schedule.start_date, schedule.charge_day
    if day is None or schedule.frequency not in _MONTHS:
        return start
    candidate = _add_months(start.year, start.month, 0, day)
    return candidate if candidate >= start else _add_months(start.year, start.month, 1, day)


def nth_charge_date(schedule: Schedule, n: int) -> date:
    """Return the date of period ``n`` (0 is the first charge), computed from the anchor.

    Without a charge day the anchor is the start date: daily +n days, weekly +7n,
    biweekly +14n, monthly and longer + k*n months keeping the start day, clamped to the
    month's end. With a charge day (monthly and longer only; ignored otherwise, which
    ``validate`` reports), period 0 is the first date on or after the start date whose
    day is the charge day clamped to the month's end, and period n is k*n months later on
    the charge day, clamped again (charge day 15, start June 16 -> July 15).

    Raises:
        ValueError: ``n`` is negative, or above 0 for a ``once`` schedule.
        OverflowError: the date would fall outside ``date``'s range.
    """
    if n < 0:
        raise ValueError(f"period index must be >= 0, got {n}")
    freq = schedule.frequency
    if freq is Frequency.ONCE:
        if n:
            raise ValueError("a one-time schedule has only period 0")
        return schedule.start_date
    anchor = _anchor(schedule)
    if freq in _DAYS:
        return anchor + timedelta(days=_DAYS[freq] * n)
    day = schedule.charge_day if schedule.charge_day is not None else anchor.day
    return _add_months(anchor.year, anchor.month, _MONTHS[freq] * n, day)


def period_index_on_or_after(schedule: Schedule, day: date) -> int:
    """Return the smallest period ``n`` whose date is on or after ``day``.

    Used when a paused schedule resumes, so the periods missed meanwhile are skipped
    rather than all charged at once. For a ``once`` schedule whose date is before ``day``
    this returns 1: no period is left. Raises OverflowError only for dates near year 9999.
    """
    freq = schedule.frequency
    first = nth_charge_date(schedule, 0)
    if day <= first:
        return 0
    if freq is Frequency.ONCE:
        return 1
    if freq in _DAYS:
        return -(-(day - first).days // _DAYS[freq])
    # Month arithmetic gives the exact period up to one step of clamping; settle it.
    months = (day.year - first.year) * 12 + (day.month - first.month)
    n = max(0, months // _MONTHS[freq])
    while nth_charge_date(schedule, n) < day:
        n += 1
    while n > 0 and nth_charge_date(schedule, n - 1) >= day:
        n -= 1
    return n


def _missing(field: str) -> InvalidInput:
    return InvalidInput(f"The schedule needs {field.replace('_', ' ')} for its stop rule.", field)


def next_charge_date(
    schedule: Schedule, *, charged_periods: int, amount_charged: int, first_period: int = 0
) -> date | None:
    """Return the date of period ``first_period + charged_periods``, or None when stopped.

    A schedule has stopped (is ``complete``) when, before that period:

    - ``once``: one period has been charged or skipped (whatever the stop rule);
    - ``count``: ``charged_periods >= stop_count`` (skipped periods do not count);
    - ``date``: that period's date is after ``end_date`` (the last charge is on or
      before the end date);
    - ``balance_due``: ``total_amount - amount_charged <= 0``;
    - ``unending``: never.

    The date may lie in the past (a declined period still owed); the caller charges it
    when it is on or before today.

    Raises:
        InvalidInput: the stop rule's field (stop_count, end_date, total_amount) is unset.
        ValueError: a counter is negative.
    """
    period = first_period + charged_periods
    if charged_periods < 0 or period < 0:
        raise ValueError("charged_periods and the next period must be >= 0")
    rule = schedule.stop_rule
    if schedule.frequency is Frequency.ONCE and period >= 1:
        return None
    if rule is StopRule.COUNT:
        if schedule.stop_count is None:
            raise _missing("stop_count")
        if charged_periods >= schedule.stop_count:
            return None
    if rule is StopRule.BALANCE_DUE:
        if schedule.total_amount is None:
            raise _missing("total_amount")
        if schedule.total_amount - amount_charged <= 0:
            return None
    when = nth_charge_date(schedule, period)
    if rule is StopRule.DATE:
        if schedule.end_date is None:
            raise _missing("end_date")
        if when > schedule.end_date:
            return None
    return when


def balance_due(schedule: Schedule, *, amount_charged: int) -> int | None:
    """Return ``total_amount - amount_charged``, or None when the schedule has no total.

    Negative when more than the total was charged (possible with fixed installments under
    other stop rules). Raises nothing.
    """
    if schedule.total_amount is None:
        return None
    return schedule.total_amount - amount_charged


def charge_amount(schedule: Schedule, *, amount_charged: int) -> int:
    """Return what the next recurring charge takes, in minor units (never negative).

    ``manual_amount`` when set (fixed installments), otherwise the balance due. Under the
    ``balance_due`` stop rule it is never more than the balance due, so the last
    installment is ``min(manual_amount, balance)`` and nobody is overcharged. Zero means
    nothing is owed for this period; the caller must not send a zero charge.

    Raises:
        InvalidInput: neither ``manual_amount`` nor ``total_amount`` is set
            (field ``manual_amount``).
    """
    balance = balance_due(schedule, amount_charged=amount_charged)
    if schedule.manual_amount is not None:
        amount = schedule.manual_amount
        if schedule.stop_rule is StopRule.BALANCE_DUE and balance is not None:
            amount = min(amount, balance)
    elif balance is not None:
        amount = balance
    else:
        raise InvalidInput("Enter a charge amount or a total.", "manual_amount")
    return max(0, amount)


def payment_received(total: int, amount_charged: int) -> Literal["none", "partial", "full"]:
    """Say how much of ``total`` has been paid: "none", "partial" or "full".

    "none" while nothing (or a net refund) has been charged, "full" once ``amount_charged``
    reaches ``total``. Raises nothing.
    """
    if amount_charged <= 0:
        return "none"
    if amount_charged >= total:
        return "full"
    return "partial"


def upcoming_charges(
    schedule: Schedule,
    *,
    charged_periods: int,
    amount_charged: int,
    first_period: int = 0,
    limit: int = 6,
) -> list[tuple[date, int]]:
    """Return the next ``limit`` ``(date, amount)`` charges if every one is approved.

    Follows ``next_charge_date`` and ``charge_amount`` period by period, adding each
    amount to ``amount_charged``, and stops early at the stop rule. Under ``balance_due``
    the amounts add up to the balance and the last is ``min(charge, balance)``.

    Raises:
        InvalidInput: as ``next_charge_date`` and ``charge_amount``.
        ValueError: ``limit`` or a counter is negative.
    """
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    charges: list[tuple[date, int]] = []
    charged = amount_charged
    for i in range(limit):
        when = next_charge_date(
            schedule,
            charged_periods=charged_periods + i,
            amount_charged=charged,
            first_period=first_period,
        )
        if when is None:
            break
        amount = charge_amount(schedule, amount_charged=charged)
        charges.append((when, amount))
        charged += amount
    return charges
