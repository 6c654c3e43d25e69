"""The partner dashboard's figures against independent computations over rows we create.

Each test writes rows for "our" partner (New York, USD) plus rows that must not count:
another partner's, another currency's, refused or non-money payments, paid and canceled
invoices. The expected figures are computed here in plain Python from the same specs.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import pytest
from sqlalchemy import Engine, event
from sqlmodel import Session

from app.domain.errors import NotFound
from app.models import Role, User
from app.services.dashboard import dashboard, month_starts, round_half_up
from tests.services.dashboard_helpers import (
    make_account,
    make_invoice,
    make_partner,
    make_payment,
    make_subscription,
)

AS_OF = date(2026, 3, 15)


@pytest.fixture
def ours(db_session: Session):  # noqa: ANN201
    partner, user = make_partner(db_session, "harbor")
    other, _ = make_partner(db_session, "rival", timezone="Europe/Berlin")
    return db_session, partner, user, make_account(db_session, partner, "Ada"), other


@pytest.fixture
def count_statements(engine: Engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:  # noqa: ANN001
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    yield statements
    event.remove(engine, "before_cursor_execute", count)


# --- collected ------------------------------------------------------------------------

# (kind, status, amount, currency, received_on, settled_at UTC, local day it counts on)
PAYMENTS = [
    ("charge", "approved", 10000, "USD", date(2026, 3, 2), None, date(2026, 3, 2)),
    ("check", "approved", 5000, "USD", date(2026, 3, 15), None, date(2026, 3, 15)),
    ("cash", "approved", 700, "USD", date(2026, 3, 1), None, date(2026, 3, 1)),
    ("bank_transfer", "approved", 800, "USD", date(2026, 1, 31), None, date(2026, 1, 31)),
    ("capture", "approved", 900, "USD", date(2025, 12, 24), None, date(2025, 12, 24)),
    ("refund", "approved", 3000, "USD", date(2026, 3, 10), None, date(2026, 3, 10)),
    ("refund", "declined", 1000, "USD", date(2026, 3, 10), None, date(2026, 3, 10)),
    ("refund", "pending", 1100, "USD", None, None, None),
    ("charge", "declined", 7000, "USD", date(2026, 3, 3), None, date(2026, 3, 3)),
    ("charge", "unknown", 7100, "USD", None, None, None),
    ("authorization", "approved", 9000, "USD", date(2026, 3, 4), None, date(2026, 3, 4)),
    ("void", "approved", 9000, "USD", date(2026, 3, 4), None, date(2026, 3, 4)),
    ("charge", "approved", 2000, "USD", date(2026, 2, 28), None, date(2026, 2, 28)),
    # No received_on: the settled instant in New York (UTC-5 in winter) decides the month.
    ("charge", "approved", 4000, "USD", None, datetime(2026, 3, 1, 4, 59, tzinfo=UTC),
     date(2026, 2, 28)),
    ("charge", "approved", 6000, "USD", None, datetime(2026, 3, 1, 5, 0, tzinfo=UTC),
     date(2026, 3, 1)),
    ("charge", "approved", 5500, "EUR", date(2026, 3, 5), None, date(2026, 3, 5)),
    ("charge", "approved", 111, "USD", date(2025, 9, 30), None, date(2025, 9, 30)),
    ("charge", "approved", 222, "USD", date(2025, 10, 1), None, date(2025, 10, 1)),
    ("refund", "approved", 50000, "USD", date(2025, 11, 20), None, date(2025, 11, 20)),
]  # fmt: skip
MONEY_IN = {"charge", "capture", "check", "cash", "bank_transfer"}


def _expected_collected(month: date) -> int:
    total = 0
    for kind, status, amount, currency, _, _, day in PAYMENTS:
        if status != "approved" or currency != "USD" or day is None:
            continue
        if (day.year, day.month) != (month.year, month.month):
            continue
        total += amount if kind in MONEY_IN else -amount if kind == "refund" else 0
    return total


def test_is_collected_approved_money_in_minus_refunds_per_local_month(ours) -> None:  # noqa: ANN001
    db, partner, user, ada, other = ours
    for kind, status, amount, currency, received, settled, _ in PAYMENTS:
        make_payment(
            db, ada, kind=kind, status=status, amount=amount, currency=currency,
            received_on=received, settled_at=settled,
        )  # fmt: skip
    rival = make_account(db, other, "Rival customer")
    make_payment(db, rival, kind="charge", amount=99999, received_on=date(2026, 3, 5))

    dash = dashboard(db, user, as_of=AS_OF)

    months = [m.month for m in dash.collected_by_month]
    assert months == [date(2025, m, 1) for m in (10, 11, 12)] + [
        date(2026, m, 1) for m in (1, 2, 3)
    ]
    assert [m.amount for m in dash.collected_by_month] == [_expected_collected(m) for m in months]
    assert dash.collected_this_month == 10000 + 5000 + 700 - 3000 + 6000
    assert dash.collected_by_month[1].amount == -50000  # a month of refunds only is negative


def test_does_the_first_month_start_at_local_midnight(ours) -> None:  # noqa: ANN001
    db, _, user, ada, _ = ours
    # Oct 1 00:00 in New York is 04:00 UTC (summer time): 03:59 UTC is still September.
    make_payment(
        db, ada, kind="charge", amount=1, settled_at=datetime(2025, 10, 1, 3, 59, tzinfo=UTC)
    )
    make_payment(
        db, ada, kind="charge", amount=20, settled_at=datetime(2025, 10, 1, 4, 0, tzinfo=UTC)
    )
    assert dashboard(db, user, as_of=AS_OF).collected_by_month[0].amount == 20


def test_month_starts_cross_the_year() -> None:
    assert month_starts(date(2026, 2, 28), 3) == [
        date(2025, 12, 1), date(2026, 1, 1), date(2026, 2, 1), date(2026, 3, 1),
    ]  # fmt: skip


# --- outstanding and overdue ----------------------------------------------------------

# (status, total, paid, days past due (as_of - due), currency)
INVOICES = [
    ("created", 1000, 0, 0, "USD"),  # due today: outstanding, not overdue
    ("created", 1100, 0, -10, "USD"),  # due later
    ("created", 1200, 200, 1, "USD"),  # past due, not yet marked overdue: 1–30
    ("overdue", 1300, 0, 30, "USD"),
    ("overdue", 1400, 0, 31, "USD"),
    ("overdue", 5000, 2000, 60, "USD"),  # partly paid: balance 3000
    ("overdue", 1600, 0, 61, "USD"),
    ("overdue", 1700, 0, 90, "USD"),
    ("overdue", 1800, 0, 91, "USD"),
    ("overdue", 1900, 0, 400, "USD"),
    ("overdue", 2100, 0, -3, "USD"),  # marked overdue before its due date: counts as 1 day
    ("paid", 2200, 2200, 45, "USD"),
    ("canceled", 2300, 0, 45, "USD"),
    ("cancellation", -2300, 0, 45, "USD"),
    ("overdue", 2400, 0, 45, "EUR"),
]


def _bucket_of(age: int) -> int:
    age = max(age, 1)
    return 0 if age <= 30 else 1 if age <= 60 else 2 if age <= 90 else 3


def test_are_outstanding_and_overdue_buckets_the_unpaid_balances(ours) -> None:  # noqa: ANN001
    db, _, user, ada, other = ours
    for status, total, paid, age, currency in INVOICES:
        make_invoice(
            db, ada, status=status, total=total, paid=paid, currency=currency,
            due=AS_OF - timedelta(days=age),
        )  # fmt: skip
    rival = make_account(db, other, "Rival")
    make_invoice(db, rival, status="overdue", total=77777, due=AS_OF - timedelta(days=40))

    dash = dashboard(db, user, as_of=AS_OF)

    open_rows = [r for r in INVOICES if r[0] in ("created", "overdue") and r[4] == "USD"]
    assert dash.outstanding == sum(total - paid for _, total, paid, _, _ in open_rows)
    assert dash.outstanding_count == len(open_rows)
    expected = [[0, 0] for _ in range(4)]
    for status, total, paid, age, _ in open_rows:
        if status == "overdue" or age >= 1:
            expected[_bucket_of(age)][0] += 1
            expected[_bucket_of(age)][1] += total - paid
    assert [[b.count, b.amount] for b in dash.overdue] == expected
    assert [b.label for b in dash.overdue] == ["1–30 days", "31–60 days", "61–90 days", "90+ days"]
    # The edges, spelled out: day 30 | 31, 60 | 61, 90 | 91.
    assert expected == [[3, 1200 - 200 + 1300 + 2100], [2, 1400 + 3000], [2, 1600 + 1700],
                        [2, 1800 + 1900]]  # fmt: skip


# --- monthly recurring revenue ---------------------------------------------------------

# (frequency, installment, status, per month as an exact fraction; None: not counted)
SCHEDULES = [
    ("monthly", 2500, "recurring", Fraction(2500)),
    ("weekly", 1500, "recurring", Fraction(1500 * 52, 12)),
    ("daily", 100, "recurring", Fraction(100 * 365, 12)),
    ("biweekly", 1001, "recurring", Fraction(1001 * 26, 12)),
    ("bimonthly", 999, "recurring", Fraction(999, 2)),
    ("quarterly", 1000, "recurring", Fraction(1000, 3)),
    ("semiannual", 1200, "recurring", Fraction(1200, 6)),
    ("annual", 12001, "recurring", Fraction(12001, 12)),
    ("biennial", 4800, "recurring", Fraction(4800, 24)),
    ("monthly", 9999, "stopped", None),
    ("monthly", 8888, "error", None),
    ("monthly", 7777, "suspended", None),
    ("once", 5000, "recurring", None),
]


def test_is_mrr_every_recurring_installment_normalised_to_a_month(ours) -> None:  # noqa: ANN001
    db, _, user, ada, other = ours
    for frequency, amount, status, _ in SCHEDULES:
        make_subscription(
            db, ada, frequency=frequency, amount=amount, status=status, start=AS_OF + timedelta(1)
        )
    # Not recurring revenue: follows its balance (no installment), finished, other tenant,
    # other currency.
    make_subscription(db, ada, frequency="monthly", amount=None, total=60000,
                      stop_rule="balance_due", start=AS_OF)  # fmt: skip
    make_subscription(db, ada, frequency="monthly", amount=3000, stop_rule="count",
                      stop_count=2, charged=2, start=AS_OF - timedelta(days=70))  # fmt: skip
    make_subscription(db, make_account(db, other, "Rival"), frequency="monthly", amount=5555,
                      start=AS_OF)  # fmt: skip
    make_subscription(db, ada, frequency="monthly", amount=4444, currency="EUR", start=AS_OF)

    exact = sum((f for *_, f in SCHEDULES if f is not None), Fraction(0))
    expected = int(Decimal(exact.numerator / Decimal(exact.denominator)).quantize(
        Decimal(1), rounding=ROUND_HALF_UP))  # fmt: skip
    assert dashboard(db, user, as_of=AS_OF).mrr == expected


def test_rounds_mrr_half_up_once() -> None:
    assert round_half_up(Fraction(5, 2)) == 3
    assert round_half_up(Fraction(7, 3)) == 2
    assert round_half_up(Fraction(-5, 2)) == -3
    assert round_half_up(Fraction(1500 * 52, 12)) == 6500


# --- expected charges -----------------------------------------------------------------


def test_are_expected_charges_the_schedules_periods_in_the_next_30_days(ours) -> None:  # noqa: ANN001
    db, _, user, ada, other = ours
    d = AS_OF
    # Monthly from Mar 20: Mar 20 only (Apr 20 is past the window's last day, Apr 13).
    make_subscription(db, ada, frequency="monthly", amount=2500, start=date(2026, 3, 20))
    # Weekly from today: Mar 15, 22, 29, Apr 5, 12.
    make_subscription(db, ada, frequency="weekly", amount=1500, start=d)
    # Installments of 4000 towards 10000 with 8000 paid: one last charge of 2000.
    make_subscription(db, ada, frequency="monthly", amount=4000, total=10000,
                      stop_rule="balance_due", charged=2, amount_charged=8000,
                      start=date(2026, 1, 25))  # fmt: skip
    # Three payments, two taken: Mar 18 only.
    make_subscription(db, ada, frequency="monthly", amount=700, stop_rule="count",
                      stop_count=3, charged=2, start=date(2026, 1, 18))  # fmt: skip
    # A period still owed from Mar 10 counts today; then Apr 10.
    make_subscription(db, ada, frequency="monthly", amount=300, charged=1,
                      start=date(2026, 2, 10))  # fmt: skip
    # Window edges: the 30th day (Apr 13) is in, the 31st (Apr 14) is out.
    make_subscription(db, ada, frequency="annual", amount=10000, start=date(2026, 4, 13))
    make_subscription(db, ada, frequency="annual", amount=20000, start=date(2026, 4, 14))
    # Never expected: stopped, declined (error), other partner, other currency.
    make_subscription(db, ada, frequency="weekly", amount=50, status="stopped", start=d)
    make_subscription(db, ada, frequency="weekly", amount=60, status="error", start=d)
    make_subscription(db, make_account(db, other, "Rival"), frequency="weekly", amount=70, start=d)
    make_subscription(db, ada, frequency="weekly", amount=80, currency="EUR", start=d)

    expected = [
        (date(2026, 3, 20), 2500),
        *((date(2026, 3, 15) + timedelta(weeks=w), 1500) for w in range(5)),
        (date(2026, 3, 25), 2000),
        (date(2026, 3, 18), 700),
        (d, 300),
        (date(2026, 4, 10), 300),
        (date(2026, 4, 13), 10000),
    ]
    dash = dashboard(db, user, as_of=AS_OF)
    assert dash.expected_count == len(expected)
    assert dash.expected_amount == sum(a for _, a in expected)
    weeks = [(w.start, w.end) for w in dash.expected_by_week]
    assert weeks == [
        (date(2026, 3, 15), date(2026, 3, 21)),
        (date(2026, 3, 22), date(2026, 3, 28)),
        (date(2026, 3, 29), date(2026, 4, 4)),
        (date(2026, 4, 5), date(2026, 4, 11)),
        (date(2026, 4, 12), date(2026, 4, 13)),
    ]
    for week in dash.expected_by_week:
        inside = [a for day, a in expected if week.start <= day <= week.end]
        assert (week.count, week.amount) == (len(inside), sum(inside)), week


# --- tenancy and statement count -------------------------------------------------------


def test_does_a_sales_user_see_the_same_dashboard(ours) -> None:  # noqa: ANN001
    db, partner, admin, ada, _ = ours
    sales = User(email="sales@harbor.example", password_hash="x", role=Role.PARTNER_SALES,
                 partner_id=partner.id)  # fmt: skip
    db.add(sales)
    db.commit()
    make_invoice(db, ada, status="overdue", total=500, due=AS_OF - timedelta(days=3))
    assert dashboard(db, sales, as_of=AS_OF) == dashboard(db, admin, as_of=AS_OF)


@pytest.mark.parametrize("role", [Role.CUSTOMER, Role.OPERATOR])
def test_do_other_roles_get_not_found(ours, role: str) -> None:  # noqa: ANN001
    db, partner, *_ = ours
    someone = User(email=f"{role}@x.example", password_hash="x", role=role, partner_id=partner.id)
    with pytest.raises(NotFound):
        dashboard(db, someone, as_of=AS_OF)


def test_does_the_dashboard_run_the_same_statements_for_few_and_many_rows(
    ours,
    count_statements: list[str],  # noqa: ANN001
) -> None:
    db, partner, user, _, _ = ours

    def add_rows(n: int) -> None:
        for i in range(n):
            acct = make_account(db, partner, f"C{i}")
            make_invoice(db, acct, status="overdue", total=100, due=AS_OF - timedelta(days=i + 1))
            make_payment(db, acct, kind="charge", amount=100, received_on=AS_OF)
            make_subscription(db, acct, frequency="weekly", amount=100, start=AS_OF)

    add_rows(1)
    db.expire_all()
    count_statements.clear()
    dashboard(db, user, as_of=AS_OF)
    few = len(count_statements)
    add_rows(20)
    db.expire_all()
    count_statements.clear()
    dashboard(db, user, as_of=AS_OF)
    assert len(count_statements) == few
    assert few <= 6
