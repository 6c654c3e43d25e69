"""Payment schedules: charge dates from the anchor, stop rules, amounts and validation."""

from __future__ import annotations

import calendar
import dataclasses
from datetime import date, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from app.domain.errors import InvalidInput
from app.domain.schedule import (
    Frequency,
    Schedule,
    StopRule,
    SubscriptionStatus,
    balance_due,
    charge_amount,
    ensure_valid,
    next_charge_date,
    nth_charge_date,
    payment_received,
    period_index_on_or_after,
    upcoming_charges,
    validate,
)

MONTHS = {
    Frequency.MONTHLY: 1,
    Frequency.BIMONTHLY: 2,
    Frequency.QUARTERLY: 3,
    Frequency.SEMIANNUAL: 6,
    Frequency.ANNUAL: 12,
    Frequency.BIENNIAL: 24,
}
DAYS = {Frequency.DAILY: 1, Frequency.WEEKLY: 7, Frequency.BIWEEKLY: 14}
TODAY = date(2024, 6, 1)


def monthly(start: date, **fields: object) -> Schedule:
    return Schedule(Frequency.MONTHLY, start, manual_amount=1000, **fields)  # type: ignore[arg-type]


def dates(schedule: Schedule, count: int) -> list[date]:
    return [nth_charge_date(schedule, n) for n in range(count)]


def all_charge_dates(schedule: Schedule, cap: int = 2000) -> list[date]:
    """Walk next_charge_date as the billing run would, one approved charge at a time."""
    found: list[date] = []
    while len(found) < cap:
        when = next_charge_date(schedule, charged_periods=len(found), amount_charged=0)
        if when is None:
            return found
        found.append(when)
    raise AssertionError("schedule did not stop")


def with_fields(s: Schedule, **changes: object) -> Schedule:
    return dataclasses.replace(s, **changes)  # type: ignore[arg-type]


def last_day(d: date) -> int:
    return calendar.monthrange(d.year, d.month)[1]


# --- worked examples ---------------------------------------------------------------------


def test_does_monthly_from_jan_31_land_on_feb_28() -> None:
    assert dates(monthly(date(2023, 1, 31)), 4) == [
        date(2023, 1, 31),
        date(2023, 2, 28),
        date(2023, 3, 31),
        date(2023, 4, 30),
    ]


def test_does_monthly_from_jan_31_land_on_feb_29_in_a_leap_year() -> None:
    assert dates(monthly(date(2024, 1, 31)), 3)[1] == date(2024, 2, 29)


def test_does_monthly_from_jan_30_return_to_the_30th_after_february() -> None:
    assert dates(monthly(date(2023, 1, 30)), 3) == [
        date(2023, 1, 30),
        date(2023, 2, 28),
        date(2023, 3, 30),
    ]


def test_does_annual_from_feb_29_keep_feb_29_in_leap_years() -> None:
    s = Schedule(Frequency.ANNUAL, date(2024, 2, 29), manual_amount=1)
    assert dates(s, 5) == [
        date(2024, 2, 29),
        date(2025, 2, 28),
        date(2026, 2, 28),
        date(2027, 2, 28),
        date(2028, 2, 29),
    ]


def test_does_charge_day_31_clamp_to_short_months() -> None:
    s = monthly(date(2023, 1, 1), charge_day=31)
    assert dates(s, 4) == [
        date(2023, 1, 31),
        date(2023, 2, 28),
        date(2023, 3, 31),
        date(2023, 4, 30),
    ]
    leap = monthly(date(2024, 2, 1), charge_day=31)
    assert nth_charge_date(leap, 0) == date(2024, 2, 29)


def test_does_charge_day_15_with_start_june_16_first_charge_july_15() -> None:
    s = monthly(date(2024, 6, 16), charge_day=15)
    assert dates(s, 3) == [date(2024, 7, 15), date(2024, 8, 15), date(2024, 9, 15)]


def test_does_a_charge_day_on_the_start_date_charge_that_day() -> None:
    assert nth_charge_date(monthly(date(2024, 6, 15), charge_day=15), 0) == date(2024, 6, 15)


def test_does_quarterly_with_charge_day_step_three_months() -> None:
    s = Schedule(Frequency.QUARTERLY, date(2024, 1, 20), charge_day=5, manual_amount=1)
    assert dates(s, 3) == [date(2024, 2, 5), date(2024, 5, 5), date(2024, 8, 5)]


def test_do_weekly_and_biweekly_keep_the_weekday() -> None:
    start = date(2024, 2, 26)  # a Monday
    weekly = Schedule(Frequency.WEEKLY, start, manual_amount=1)
    biweekly = Schedule(Frequency.BIWEEKLY, start, manual_amount=1)
    assert dates(weekly, 3) == [start, date(2024, 3, 4), date(2024, 3, 11)]
    assert dates(biweekly, 3) == [start, date(2024, 3, 11), date(2024, 3, 25)]
    assert {d.weekday() for d in dates(biweekly, 30)} == {0}


def test_does_daily_charge_every_day() -> None:
    s = Schedule(Frequency.DAILY, date(2024, 2, 28), manual_amount=1)
    assert dates(s, 3) == [date(2024, 2, 28), date(2024, 2, 29), date(2024, 3, 1)]


def test_does_a_once_schedule_charge_exactly_once_on_its_start_date() -> None:
    s = Schedule(Frequency.ONCE, date(2024, 7, 1), total_amount=5000)
    assert next_charge_date(s, charged_periods=0, amount_charged=0) == date(2024, 7, 1)
    assert next_charge_date(s, charged_periods=1, amount_charged=5000) is None
    assert upcoming_charges(s, charged_periods=0, amount_charged=0) == [(date(2024, 7, 1), 5000)]
    with pytest.raises(ValueError):
        nth_charge_date(s, 1)


def test_does_count_stop_after_the_nth_approved_charge() -> None:
    s = monthly(date(2024, 1, 10), stop_rule=StopRule.COUNT, stop_count=3)
    assert all_charge_dates(s) == [date(2024, 1, 10), date(2024, 2, 10), date(2024, 3, 10)]


def test_does_date_stop_charge_on_the_end_date_but_not_after() -> None:
    on = monthly(date(2024, 1, 10), stop_rule=StopRule.DATE, end_date=date(2024, 3, 10))
    assert all_charge_dates(on)[-1] == date(2024, 3, 10)
    before = monthly(date(2024, 1, 10), stop_rule=StopRule.DATE, end_date=date(2024, 3, 9))
    assert all_charge_dates(before)[-1] == date(2024, 2, 10)


def test_does_balance_due_never_overcharge_the_last_installment() -> None:
    s = Schedule(
        Frequency.MONTHLY,
        date(2024, 1, 31),
        stop_rule=StopRule.BALANCE_DUE,
        total_amount=10000,
        manual_amount=3000,
    )
    assert upcoming_charges(s, charged_periods=0, amount_charged=0, limit=10) == [
        (date(2024, 1, 31), 3000),
        (date(2024, 2, 29), 3000),
        (date(2024, 3, 31), 3000),
        (date(2024, 4, 30), 1000),
    ]
    assert next_charge_date(s, charged_periods=4, amount_charged=10000) is None


def test_does_the_charge_follow_the_balance_without_a_manual_amount() -> None:
    s = Schedule(
        Frequency.MONTHLY, date(2024, 1, 1), stop_rule=StopRule.BALANCE_DUE, total_amount=9000
    )
    assert charge_amount(s, amount_charged=2500) == 6500
    assert upcoming_charges(s, charged_periods=1, amount_charged=2500) == [(date(2024, 2, 1), 6500)]


def test_does_a_fixed_installment_keep_charging_under_other_stop_rules() -> None:
    s = monthly(date(2024, 1, 1), total_amount=1500)
    assert charge_amount(s, amount_charged=2000) == 1000
    assert balance_due(s, amount_charged=2000) == -500


def test_does_unending_never_stop() -> None:
    s = monthly(date(2024, 1, 1))
    assert next_charge_date(s, charged_periods=500, amount_charged=10**9) == date(2065, 9, 1)


def test_does_upcoming_charges_honour_the_limit() -> None:
    s = monthly(date(2024, 1, 1))
    assert len(upcoming_charges(s, charged_periods=0, amount_charged=0, limit=6)) == 6
    assert upcoming_charges(s, charged_periods=0, amount_charged=0, limit=0) == []


def test_does_a_resumed_schedule_skip_the_periods_missed_while_paused() -> None:
    s = monthly(date(2024, 1, 15))
    # Two charges taken (Jan, Feb), paused, resumed on May 20: next is June 15, not March.
    resume_at = period_index_on_or_after(s, date(2024, 5, 20))
    assert resume_at == 5
    first_period = resume_at - 2
    assert next_charge_date(
        s, charged_periods=2, amount_charged=0, first_period=first_period
    ) == date(2024, 6, 15)


def test_does_a_passed_once_schedule_have_no_period_left() -> None:
    s = Schedule(Frequency.ONCE, date(2024, 1, 1), manual_amount=1)
    assert period_index_on_or_after(s, date(2024, 1, 1)) == 0
    assert period_index_on_or_after(s, date(2024, 1, 2)) == 1
    assert next_charge_date(s, charged_periods=0, amount_charged=0, first_period=1) is None


def test_does_a_missing_stop_field_raise_invalid_input() -> None:
    for schedule, field in [
        (monthly(date(2024, 1, 1), stop_rule=StopRule.COUNT), "stop_count"),
        (monthly(date(2024, 1, 1), stop_rule=StopRule.DATE), "end_date"),
        (monthly(date(2024, 1, 1), stop_rule=StopRule.BALANCE_DUE), "total_amount"),
    ]:
        with pytest.raises(InvalidInput) as err:
            next_charge_date(schedule, charged_periods=0, amount_charged=0)
        assert err.value.field == field


def test_does_charge_amount_need_a_manual_amount_or_total() -> None:
    with pytest.raises(InvalidInput):
        charge_amount(Schedule(Frequency.MONTHLY, date(2024, 1, 1)), amount_charged=0)


def test_does_a_schedule_accept_stored_strings_and_refuse_unknown_ones() -> None:
    s = Schedule("quarterly", date(2024, 1, 1), stop_rule="count", stop_count=2)  # type: ignore[arg-type]
    assert s.frequency is Frequency.QUARTERLY and s.stop_rule is StopRule.COUNT
    with pytest.raises(InvalidInput) as err:
        Schedule("fortnightly", date(2024, 1, 1))  # type: ignore[arg-type]
    assert err.value.field == "frequency"
    assert SubscriptionStatus("suspended") is SubscriptionStatus.SUSPENDED


@pytest.mark.parametrize(
    ("total", "charged", "expected"),
    [(10000, 0, "none"), (10000, 1, "partial"), (10000, 10000, "full"), (10000, 12000, "full")],
)
def test_what_payment_received_does_a_total_show(total: int, charged: int, expected: str) -> None:
    assert payment_received(total, charged) == expected


# --- validation --------------------------------------------------------------------------

VALID = Schedule(Frequency.MONTHLY, TODAY, manual_amount=1000)


def test_is_a_plain_monthly_schedule_valid() -> None:
    assert validate(VALID, is_new=True, as_of=TODAY) == []
    ensure_valid(VALID, is_new=True, as_of=TODAY)


def with_(**changes: object) -> Schedule:
    return with_fields(VALID, **changes)


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        (with_(frequency=Frequency.WEEKLY, charge_day=5), "charge_day"),
        (with_(frequency=Frequency.DAILY, charge_day=5), "charge_day"),
        (with_(frequency=Frequency.BIWEEKLY, charge_day=5), "charge_day"),
        (with_(frequency=Frequency.ONCE, charge_day=5), "charge_day"),
        (with_(charge_day=0), "charge_day"),
        (with_(charge_day=32), "charge_day"),
        (with_(stop_rule=StopRule.DATE), "end_date"),
        (with_(stop_rule=StopRule.DATE, end_date=TODAY - timedelta(days=1)), "end_date"),
        (with_(stop_rule=StopRule.DATE, charge_day=20, end_date=date(2024, 6, 10)), "end_date"),
        (with_(stop_rule=StopRule.COUNT), "stop_count"),
        (with_(stop_rule=StopRule.COUNT, stop_count=0), "stop_count"),
        (with_(stop_rule=StopRule.BALANCE_DUE), "total_amount"),
        (with_(stop_rule=StopRule.BALANCE_DUE, total_amount=0), "total_amount"),
        (with_(total_amount=-5), "total_amount"),
        (with_(manual_amount=None), "manual_amount"),
        (with_(manual_amount=0), "manual_amount"),
        (with_(manual_amount=-100), "manual_amount"),
        (with_(start_date=TODAY - timedelta(days=1)), "start_date"),
    ],
)
def test_does_validate_catch_each_invalid_combination(schedule: Schedule, field: str) -> None:
    problems = validate(schedule, is_new=True, as_of=TODAY)
    assert [f for f, _ in problems] == [field]
    with pytest.raises(InvalidInput) as err:
        ensure_valid(schedule, is_new=True, as_of=TODAY)
    assert err.value.field == field
    assert err.value.message == problems[0][1]


def test_may_an_existing_schedule_keep_a_past_start_date() -> None:
    past = with_(start_date=date(2020, 1, 1))
    assert validate(past, is_new=False, as_of=TODAY) == []


def test_does_validate_report_every_problem_at_once() -> None:
    broken = with_(
        frequency=Frequency.WEEKLY, charge_day=3, stop_rule=StopRule.COUNT, manual_amount=0
    )
    fields = [f for f, _ in validate(broken, is_new=True, as_of=TODAY)]
    assert fields == ["charge_day", "stop_count", "manual_amount"]


# --- properties --------------------------------------------------------------------------


@st.composite
def schedules(draw: st.DrawFn, frequencies: list[Frequency] | None = None) -> Schedule:
    frequency = draw(st.sampled_from(frequencies or list(Frequency)))
    start = draw(st.dates(date(2000, 1, 1), date(2080, 12, 31)))
    charge_day = draw(st.none() | st.integers(1, 31)) if frequency in MONTHS else None
    stop_rule = draw(st.sampled_from(list(StopRule)))
    total = draw(st.none() | st.integers(1, 10**7))
    manual = draw(st.none() | st.integers(1, 10**6))
    if stop_rule is StopRule.BALANCE_DUE and total is None:
        total = draw(st.integers(1, 10**7))
    if manual is None and total is None:
        manual = draw(st.integers(1, 10**6))
    end = draw(st.dates(start, start + timedelta(days=3660)))
    return Schedule(
        frequency,
        start,
        charge_day=charge_day,
        stop_rule=stop_rule,
        end_date=end if stop_rule is StopRule.DATE else None,
        stop_count=draw(st.integers(1, 40)) if stop_rule is StopRule.COUNT else None,
        total_amount=total,
        manual_amount=manual,
    )


recurring = [f for f in Frequency if f is not Frequency.ONCE]


@given(schedules(recurring))
def test_do_charge_dates_strictly_increase_and_never_precede_the_start(s: Schedule) -> None:
    found = dates(s, 40)
    assert found[0] >= s.start_date
    assert all(a < b for a, b in zip(found, found[1:], strict=False))


@given(schedules(list(MONTHS)))
def test_do_monthly_like_dates_never_drift_from_the_anchor_over_ten_years(s: Schedule) -> None:
    step = MONTHS[s.frequency]
    first = nth_charge_date(s, 0)
    anchor_day = s.charge_day if s.charge_day is not None else s.start_date.day
    for n in range(120 // step + 1):
        d = nth_charge_date(s, n)
        months_from_first = (d.year - first.year) * 12 + d.month - first.month
        assert months_from_first == step * n
        assert d.day == min(anchor_day, last_day(d))


@given(schedules(list(MONTHS)), st.integers(1, 31))
def test_is_the_first_charge_the_first_charge_day_on_or_after_the_start(
    s: Schedule, charge_day: int
) -> None:
    s = with_fields(s, charge_day=charge_day)
    first = nth_charge_date(s, 0)
    assert first >= s.start_date
    assert first.day == min(charge_day, last_day(first))
    day = s.start_date
    while day < first:
        assert day.day != min(charge_day, last_day(day))
        day += timedelta(days=1)


@given(schedules(list(DAYS)), st.integers(0, 1000))
def test_do_day_based_dates_step_exactly_from_the_start(s: Schedule, n: int) -> None:
    assert nth_charge_date(s, n) == s.start_date + timedelta(days=DAYS[s.frequency] * n)


@given(schedules(recurring), st.integers(0, 3000))
def test_is_the_period_index_the_first_period_on_or_after_a_day(s: Schedule, offset: int) -> None:
    day = s.start_date + timedelta(days=offset)
    n = period_index_on_or_after(s, day)
    assert nth_charge_date(s, n) >= day
    assert n == 0 or nth_charge_date(s, n - 1) < day


@given(schedules(recurring))
def test_does_a_date_stop_end_exactly_at_the_end_date(s: Schedule) -> None:
    s = with_fields(s, stop_rule=StopRule.DATE, end_date=s.end_date or s.start_date)
    assume(s.frequency is not Frequency.DAILY or s.end_date - s.start_date < timedelta(days=800))
    found = all_charge_dates(s)
    assert s.end_date is not None
    if found:
        assert found[-1] <= s.end_date
    assert nth_charge_date(s, len(found)) > s.end_date


@given(schedules(recurring), st.integers(1, 40))
def test_does_a_count_stop_take_exactly_count_charges(s: Schedule, count: int) -> None:
    s = with_fields(s, stop_rule=StopRule.COUNT, stop_count=count)
    assert len(all_charge_dates(s)) == count


@given(schedules(recurring), st.data())
def test_do_balance_due_amounts_sum_to_the_balance_without_exceeding_it(
    s: Schedule, data: st.DataObject
) -> None:
    total = data.draw(st.integers(1, 100_000))
    manual = data.draw(st.none() | st.integers(-(-total // 60), total + 100))  # ≤ 60 charges
    charged = data.draw(st.integers(0, total - 1))
    s = with_fields(s, stop_rule=StopRule.BALANCE_DUE, total_amount=total, manual_amount=manual)
    charges = upcoming_charges(s, charged_periods=0, amount_charged=charged, limit=100)
    balance = total - charged
    assert sum(amount for _, amount in charges) == balance
    for _, amount in charges:
        assert 0 < amount <= balance
        balance -= amount
    assert next_charge_date(s, charged_periods=len(charges), amount_charged=total) is None


@given(schedules(), st.dates(date(2000, 1, 1), date(2080, 12, 31)))
def test_is_every_generated_schedule_valid_when_it_starts_on_or_after_today(
    s: Schedule, as_of: date
) -> None:
    assume(s.stop_rule is not StopRule.DATE or nth_charge_date(s, 0) <= (s.end_date or date.max))
    assert validate(s, is_new=False, as_of=as_of) == []
    assert validate(s, is_new=True, as_of=min(as_of, s.start_date)) == []
