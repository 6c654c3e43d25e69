"""When does a saved card warn? Within 60 days of its last valid day, and once expired."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from app.domain.cards import EXPIRY_WARNING_DAYS, ExpiryState, card_expiry, last_valid_day

LAST_DAY = date(2026, 3, 31)  # a card expiring 03/2026 works through March 31


@pytest.mark.parametrize(
    ("days_before", "state"),
    [
        (61, ExpiryState.OK),
        (60, ExpiryState.EXPIRING),
        (59, ExpiryState.EXPIRING),
        (1, ExpiryState.EXPIRING),
        (0, ExpiryState.EXPIRING),
        (-1, ExpiryState.EXPIRED),
        (-400, ExpiryState.EXPIRED),
    ],
)
def test_does_a_card_warn_at_the_60_day_edge(days_before: int, state: ExpiryState) -> None:
    as_of = LAST_DAY - timedelta(days=days_before)

    expiry = card_expiry(3, 2026, as_of=as_of)

    assert expiry.state == state
    assert expiry.days_left == days_before
    assert expiry.last_day == LAST_DAY
    assert expiry.warns == (days_before <= EXPIRY_WARNING_DAYS)


def test_is_the_last_valid_day_the_end_of_the_expiry_month() -> None:
    assert last_valid_day(2, 2028) == date(2028, 2, 29)
    assert last_valid_day(2, 2027) == date(2027, 2, 28)
    assert last_valid_day(12, 2026) == date(2026, 12, 31)


@pytest.mark.parametrize(("month", "year"), [(None, 2026), (3, None), (13, 2026), (0, 2026)])
def test_is_a_missing_or_impossible_expiry_unknown(month: int | None, year: int | None) -> None:
    expiry = card_expiry(month, year, as_of=date(2026, 1, 1))

    assert expiry.state == ExpiryState.UNKNOWN
    assert not expiry.warns
