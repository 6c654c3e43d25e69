"""Schedules over time: 55 subscriptions billed day by day for three years.

Every frequency, charge days 28-31, starts around month ends and on Feb 29 2028, every
stop rule (balance due with and without fixed installments), manual charges and skips.
The billing run is driven one day at a time with ``start_run``/``process_chunk`` (only
on days something is due); every approved recurring charge (period date, amount) is
compared with a list computed here from first principles, without app/domain/schedule.

Manual charges happen before the run of their day, in two ways: a partner user's
"Charge now" (``manual_charges.charge_now``: the next installment, as a non-recurring
charge), or a payment of a chosen amount such as a down payment, charged through the
payments service as a non-recurring charge that adds to ``amount_charged``
(``billing_helpers.charge_by_hand``). Skips are the partner user's "Skip the next
scheduled charge" (``subscriptions.skip_next``), also before the run of their day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from itertools import count

from sqlmodel import select

from app.models import BillingRun, Subscription
from app.services.manual_charges import charge_now
from app.services.subscription_billing import due_subscription_ids
from app.services.subscriptions import skip_next
from tests.services.billing_helpers import (
    add_subscription,
    approved_recurring,
    assert_ledger_matches_processor,
    at_three,
    charge_by_hand,
    make_customer,
    make_partner,
    partner_admin,
    run_billing,
    sandbox,
)

FIRST_DAY = date(2027, 12, 1)
LAST_DAY = date(2030, 11, 30)  # three years of daily runs
D = date


@dataclass(frozen=True)
class Case:
    name: str
    frequency: str
    start: date
    charge_day: int | None = None
    stop: str = "unending"
    end: date | None = None
    count: int | None = None
    total: int | None = None
    fixed: int | None = 1000  # manual_amount: a fixed installment, None follows the balance
    # Before that day's run: (day, None) is "Charge now", (day, amount) a chosen amount.
    manual: tuple[tuple[date, int | None], ...] = ()
    skips: tuple[date, ...] = ()  # "Skip the next scheduled charge" before that day's run


CASES: tuple[Case, ...] = (
    # once
    Case("once on leap day", "once", D(2028, 2, 29), fixed=2500),
    Case("once on new year's eve, count 1", "once", D(2027, 12, 31), stop="count", count=1),
    Case("once, skipped before it", "once", D(2028, 3, 31), skips=(D(2028, 3, 1),)),
    Case("once, late, end date", "once", D(2030, 6, 30), stop="date", end=D(2030, 6, 30)),
    Case("once, balance", "once", D(2028, 1, 31), stop="balance_due", total=4200, fixed=None),
    # daily
    Case("daily over Feb 29, count 5", "daily", D(2028, 2, 27), stop="count", count=5),
    Case("daily to an end date", "daily", D(2028, 2, 20), stop="date", end=D(2028, 3, 5)),
    Case("daily installments", "daily", D(2029, 2, 25), stop="balance_due", total=5000, fixed=700),
    Case("daily unending, late start", "daily", D(2030, 10, 1), fixed=150),
    Case(
        "daily count with skip and manual",
        "daily",
        D(2028, 12, 28),
        stop="count",
        count=10,
        skips=(D(2028, 12, 31),),
        manual=((D(2029, 1, 2), None),),
    ),  # fmt: skip
    # weekly
    Case("weekly from Feb 29", "weekly", D(2028, 2, 29), fixed=1250),
    Case("weekly count 20", "weekly", D(2027, 12, 31), stop="count", count=20),
    Case("weekly to an end date", "weekly", D(2028, 2, 26), stop="date", end=D(2028, 6, 30)),
    Case(
        "weekly installments",
        "weekly",
        D(2028, 1, 31),
        stop="balance_due",
        total=10000,
        fixed=1500,
    ),  # fmt: skip
    Case(
        "weekly with skips and a manual charge",
        "weekly",
        D(2029, 12, 29),
        fixed=900,
        skips=(D(2030, 1, 3), D(2030, 3, 1)),
        manual=((D(2030, 2, 1), None),),
    ),  # fmt: skip
    # biweekly
    Case("biweekly from Feb 29", "biweekly", D(2028, 2, 29)),
    Case("biweekly count 10", "biweekly", D(2027, 12, 31), stop="count", count=10),
    Case("biweekly to an end date", "biweekly", D(2028, 12, 3), stop="date", end=D(2029, 1, 1)),
    Case(
        "biweekly follows the balance after a down payment",
        "biweekly",
        D(2028, 1, 14),
        stop="balance_due",
        total=9000,
        fixed=None,
        manual=((D(2028, 1, 10), 2000),),
    ),  # fmt: skip
    Case(
        "biweekly installments with a manual charge",
        "biweekly",
        D(2028, 3, 3),
        stop="balance_due",
        total=10000,
        fixed=2500,
        manual=((D(2028, 3, 20), None),),
    ),  # fmt: skip
    # monthly, charge days 28-31
    Case("monthly from Jan 31", "monthly", D(2028, 1, 31)),
    Case("monthly on the 31st", "monthly", D(2028, 1, 15), charge_day=31),
    Case(
        "monthly on the 30th, count 14",
        "monthly",
        D(2028, 2, 1),
        charge_day=30,
        stop="count",
        count=14,
    ),  # fmt: skip
    Case("monthly from Feb 29", "monthly", D(2028, 2, 29)),
    Case(
        "monthly on the 29th to a date",
        "monthly",
        D(2028, 2, 29),
        charge_day=29,
        stop="date",
        end=D(2029, 3, 1),
    ),  # fmt: skip
    Case(
        "monthly on the 28th, installments",
        "monthly",
        D(2027, 12, 31),
        charge_day=28,
        stop="balance_due",
        total=10000,
        fixed=3000,
    ),  # fmt: skip
    Case(
        "monthly installments with a manual charge",
        "monthly",
        D(2028, 1, 30),
        stop="balance_due",
        total=50000,
        fixed=7000,
        manual=((D(2028, 4, 10), None),),
    ),  # fmt: skip
    Case(
        "monthly on the 31st, count 6, skip",
        "monthly",
        D(2028, 3, 31),
        charge_day=31,
        stop="count",
        count=6,
        skips=(D(2028, 5, 1),),
    ),  # fmt: skip
    Case(
        "monthly on the 29th, charge now then skip",
        "monthly",
        D(2028, 1, 29),
        charge_day=29,
        manual=((D(2028, 6, 15), None),),
        skips=(D(2028, 6, 15),),
    ),  # fmt: skip
    Case(
        "monthly on the 28th to a date",
        "monthly",
        D(2028, 2, 28),
        charge_day=28,
        stop="date",
        end=D(2030, 2, 27),
    ),  # fmt: skip
    Case("monthly from Feb 28 (not leap)", "monthly", D(2029, 2, 28), fixed=4999),
    Case(
        "monthly on the 31st from Feb 29, count 4",
        "monthly",
        D(2028, 2, 29),
        charge_day=31,
        stop="count",
        count=4,
    ),  # fmt: skip
    Case("monthly from Apr 30, count 12", "monthly", D(2028, 4, 30), stop="count", count=12),
    Case(
        "monthly on the 30th, skip in February",
        "monthly",
        D(2028, 12, 31),
        charge_day=30,
        skips=(D(2029, 2, 1),),
    ),  # fmt: skip
    Case(
        "monthly follows the balance",
        "monthly",
        D(2027, 12, 1),
        charge_day=29,
        stop="balance_due",
        total=3000,
        fixed=None,
    ),  # fmt: skip
    # bimonthly
    Case("bimonthly from Dec 31", "bimonthly", D(2027, 12, 31)),
    Case(
        "bimonthly on the 30th from Feb 29, count 8",
        "bimonthly",
        D(2028, 2, 29),
        charge_day=30,
        stop="count",
        count=8,
    ),  # fmt: skip
    Case(
        "bimonthly on the 31st to a date",
        "bimonthly",
        D(2028, 1, 31),
        charge_day=31,
        stop="date",
        end=D(2029, 8, 30),
    ),  # fmt: skip
    Case(
        "bimonthly installments with a manual charge",
        "bimonthly",
        D(2028, 1, 28),
        charge_day=28,
        stop="balance_due",
        total=20000,
        fixed=6000,
        manual=((D(2028, 5, 1), 1000),),
    ),  # fmt: skip
    # quarterly
    Case("quarterly on the 31st", "quarterly", D(2027, 12, 31), charge_day=31),
    Case(
        "quarterly installments from Feb 29",
        "quarterly",
        D(2028, 2, 29),
        stop="balance_due",
        total=40000,
        fixed=9000,
    ),  # fmt: skip
    Case(
        "quarterly on the 28th, count 5, skip",
        "quarterly",
        D(2028, 1, 28),
        charge_day=28,
        stop="count",
        count=5,
        skips=(D(2028, 3, 1),),
    ),  # fmt: skip
    Case(
        "quarterly on the 30th to a date",
        "quarterly",
        D(2028, 11, 30),
        charge_day=30,
        stop="date",
        end=D(2030, 5, 29),
    ),  # fmt: skip
    # semiannual
    Case("semiannual from Feb 29", "semiannual", D(2028, 2, 29)),
    Case(
        "semiannual on the 30th to a date",
        "semiannual",
        D(2027, 12, 30),
        charge_day=30,
        stop="date",
        end=D(2029, 12, 29),
    ),  # fmt: skip
    Case(
        "semiannual installments with a manual charge",
        "semiannual",
        D(2028, 3, 31),
        charge_day=31,
        stop="balance_due",
        total=25000,
        fixed=10000,
        manual=((D(2028, 10, 1), 3000),),
    ),  # fmt: skip
    # annual
    Case("annual from Feb 29", "annual", D(2028, 2, 29), fixed=12000),
    Case(
        "annual on the 29th, count 2",
        "annual",
        D(2028, 2, 29),
        charge_day=29,
        stop="count",
        count=2,
    ),  # fmt: skip
    Case(
        "annual on the 31st to a date",
        "annual",
        D(2028, 1, 31),
        charge_day=31,
        stop="date",
        end=D(2030, 1, 30),
    ),  # fmt: skip
    Case(
        "annual follows the balance after a down payment",
        "annual",
        D(2027, 12, 31),
        stop="balance_due",
        total=12000,
        fixed=None,
        manual=((D(2027, 12, 15), 5000),),
    ),  # fmt: skip
    Case(
        "annual on the 29th, skip a year",
        "annual",
        D(2028, 3, 1),
        charge_day=29,
        skips=(D(2029, 1, 1),),
    ),  # fmt: skip
    # biennial
    Case("biennial from Feb 29", "biennial", D(2028, 2, 29), fixed=20000),
    Case(
        "biennial on the 31st, count 1",
        "biennial",
        D(2027, 12, 31),
        charge_day=31,
        stop="count",
        count=1,
    ),  # fmt: skip
    Case(
        "biennial installments on the 30th",
        "biennial",
        D(2028, 1, 30),
        charge_day=30,
        stop="balance_due",
        total=30000,
        fixed=20000,
    ),  # fmt: skip
    Case(
        "biennial on the 29th from Feb 28",
        "biennial",
        D(2029, 2, 28),
        charge_day=29,
        stop="date",
        end=D(2031, 12, 31),
    ),  # fmt: skip
)

# -- the expected schedule, from first principles ---------------------------------------

DAY_STEPS = {"daily": 1, "weekly": 7, "biweekly": 14}
MONTH_STEPS = {"monthly": 1, "bimonthly": 2, "quarterly": 3, "semiannual": 6, "annual": 12,
               "biennial": 24}  # fmt: skip


def _on_day_of_month(year: int, month: int, day: int) -> date:
    """``day`` of the given month (month may run past 12), or its last day if shorter."""
    year, month = year + (month - 1) // 12, (month - 1) % 12 + 1
    last = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    return date(year, month, min(day, last))


def charge_dates(case: Case):  # noqa: ANN201  (an endless iterator of dates)
    """Period 0, 1, 2, ... of a schedule."""
    if case.frequency == "once":
        yield case.start
        return
    if case.frequency in DAY_STEPS:
        for n in count():
            yield case.start + timedelta(days=DAY_STEPS[case.frequency] * n)
    # Walk the calendar month by month: the charge day (or the start day) of each month,
    # clamped; the first one on or after the start is period 0, then every k-th month.
    day = case.charge_day or case.start.day
    months = (_on_day_of_month(case.start.year, case.start.month + i, day) for i in count())
    first = next(i for i, d in enumerate(months) if d >= case.start)
    step = MONTH_STEPS[case.frequency]
    for n in count():
        yield _on_day_of_month(case.start.year, case.start.month + first + step * n, day)


@dataclass
class Expected:
    charges: list[tuple[date, int]]
    next_date: date | None  # None: the stop rule was reached (complete)


def expected(case: Case, last_day: date) -> Expected:
    """What billing every day up to ``last_day`` must charge, with manual events."""
    dates = list(_take_dates(case, last_day))
    charges: list[tuple[date, int]] = []
    state = {"periods": 0, "paid": 0, "skipped": 0}

    def upcoming() -> tuple[date, int] | None:
        period = state["skipped"] + state["periods"]
        balance = None if case.total is None else case.total - state["paid"]
        if case.frequency == "once" and period >= 1:
            return None
        if case.stop == "count" and state["periods"] >= (case.count or 0):
            return None
        if case.stop == "balance_due" and balance is not None and balance <= 0:
            return None
        when = dates[period]
        if case.stop == "date" and case.end is not None and when > case.end:
            return None
        if case.fixed is None:
            assert balance is not None
            amount = balance
        elif case.stop == "balance_due" and balance is not None:
            amount = min(case.fixed, balance)
        else:
            amount = case.fixed
        return when, amount

    def charge_until(before: date) -> None:
        while (nxt := upcoming()) is not None and nxt[0] < before:
            charges.append(nxt)
            state["periods"] += 1
            state["paid"] += nxt[1]

    events = sorted(
        [(day, 0, amount) for day, amount in case.manual] + [(day, 1, None) for day in case.skips]
    )
    for day, kind, amount in events:
        charge_until(day)
        if kind == 0:
            if amount is None:  # "Charge now" takes the next installment
                nxt = upcoming()
                assert nxt is not None
                amount = nxt[1]
            state["paid"] += amount
        else:
            state["skipped"] += 1
    charge_until(last_day + timedelta(days=1))
    following = upcoming()
    return Expected(charges, None if following is None else following[0])


def _take_dates(case: Case, last_day: date):  # noqa: ANN202
    """Enough period dates to pass ``last_day`` (plus skips), as a finite list."""
    for when in charge_dates(case):
        yield when
        if when > last_day + timedelta(days=800):
            return


def test_does_the_model_in_this_test_agree_with_the_documented_examples() -> None:
    jan31 = Case("", "monthly", D(2029, 1, 31))
    assert list(_take_dates(jan31, D(2029, 4, 30)))[:4] == [
        D(2029, 1, 31), D(2029, 2, 28), D(2029, 3, 31), D(2029, 4, 30),
    ]  # fmt: skip
    june16 = Case("", "monthly", D(2028, 6, 16), charge_day=15)
    assert next(charge_dates(june16)) == D(2028, 7, 15)
    installments = Case("", "monthly", D(2028, 1, 1), stop="balance_due", total=100, fixed=30)
    assert [a for _, a in expected(installments, D(2029, 1, 1)).charges] == [30, 30, 30, 10]
    charged_now = Case("", "monthly", D(2028, 1, 1), stop="balance_due", total=100, fixed=30,
                       manual=((D(2028, 1, 15), None),))  # fmt: skip
    assert expected(charged_now, D(2029, 1, 1)).charges == [
        (D(2028, 1, 1), 30), (D(2028, 2, 1), 30), (D(2028, 3, 1), 10),
    ]  # fmt: skip


# -- the run -------------------------------------------------------------------------------


def test_does_billing_every_day_for_three_years_charge_exactly_the_expected_schedule(
    app, db_session
) -> None:
    assert len(CASES) >= 50
    assert {c.frequency for c in CASES} == {"once", *DAY_STEPS, *MONTH_STEPS}
    gateway = sandbox(app)
    with app.app_context():
        partner = make_partner(db_session)
        admin = partner_admin(db_session, partner)
        by_case: dict[str, int] = {}
        for i, case in enumerate(CASES):
            account, method = make_customer(db_session, gateway, partner, f"Member {i:02d}")
            sub = add_subscription(
                db_session, account, method, frequency=case.frequency, start_date=case.start,
                description=case.name, charge_day=case.charge_day, stop_rule=case.stop,
                end_date=case.end, stop_count=case.count, total_amount=case.total,
                manual_amount=case.fixed,
            )  # fmt: skip
            by_case[case.name] = sub.id  # type: ignore[assignment]
        events: dict[date, list[tuple[int, str, int | None]]] = {}
        for case in CASES:
            for day, amount in case.manual:
                events.setdefault(day, []).append((by_case[case.name], "charge", amount))
            for day in case.skips:
                events.setdefault(day, []).append((by_case[case.name], "skip", None))

        day, run_days = FIRST_DAY, 0
        while day <= LAST_DAY:
            for n, (sub_id, kind, amount) in enumerate(events.get(day, [])):
                if kind == "skip":
                    skip_next(db_session, admin, sub_id, now=at_three(day))
                elif amount is None:
                    done = charge_now(db_session, gateway, admin, sub_id, now=at_three(day))
                    assert done.status == "approved", done
                else:
                    sub = db_session.get(Subscription, sub_id, populate_existing=True)
                    assert sub is not None
                    charge_by_hand(db_session, gateway, sub, amount, key=f"{day}:{n}")
            if due_subscription_ids(db_session, partner_id=partner.id, as_of=day):  # type: ignore[arg-type]
                run_billing(db_session, gateway, partner.id, day, now=at_three(day))  # type: ignore[arg-type]
                run_days += 1
            day += timedelta(days=1)

    charged: dict[int, list[tuple[date, int]]] = {}
    for payment in approved_recurring(db_session):
        charged.setdefault(payment.subscription_id, []).append(  # type: ignore[arg-type]
            (payment.period_date, payment.amount)  # type: ignore[arg-type]
        )
    mismatches = {}
    for case in CASES:
        want = expected(case, LAST_DAY)
        sub = db_session.get(Subscription, by_case[case.name], populate_existing=True)
        assert sub is not None
        got = charged.get(sub.id, [])  # type: ignore[arg-type]
        status = "recurring" if want.next_date else "complete"
        if (got, sub.next_charge_date, sub.status) != (want.charges, want.next_date, status):
            mismatches[case.name] = {
                "missing": [c for c in want.charges if c not in got],
                "unexpected": [c for c in got if c not in want.charges],
                "next": (sub.next_charge_date, want.next_date),
                "status": (sub.status, status),
            }
    assert mismatches == {}

    total = sum(len(expected(c, LAST_DAY).charges) for c in CASES)
    runs = db_session.exec(select(BillingRun)).all()
    assert sum(r.charged for r in runs) == total
    assert sum(r.declined + r.unknown + r.errors for r in runs) == 0
    assert len(runs) == run_days
    assert_ledger_matches_processor(db_session, gateway)
