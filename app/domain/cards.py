"""When a saved card stops working, and whether to warn about it.

Pure code: "today" is always an argument (the partner's local date).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Final

# A card that expires within this many days of today gets a warning on the account page.
EXPIRY_WARNING_DAYS: Final = 60


class ExpiryState(StrEnum):
    OK = "ok"
    EXPIRING = "expiring"  # expires within EXPIRY_WARNING_DAYS (today included)
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # no expiry on file (bank accounts, some tokens)


@dataclass(frozen=True)
class CardExpiry:
    state: ExpiryState
    last_day: date | None  # the last day the card works (end of its expiry month)
    days_left: int | None  # days from today to last_day; negative once expired

    @property
    def warns(self) -> bool:
        """Whether the page should show a warning for this card."""
        return self.state in (ExpiryState.EXPIRING, ExpiryState.EXPIRED)


def last_valid_day(exp_month: int, exp_year: int) -> date:
    """The last day a card with expiry ``MM/YYYY`` works: the month's last day.

    Raises ValueError for a month outside 1–12 or a year outside date's range.
    """
    return date(exp_year, exp_month, calendar.monthrange(exp_year, exp_month)[1])


def card_expiry(exp_month: int | None, exp_year: int | None, *, as_of: date) -> CardExpiry:
    """Where a card stands on ``as_of``: fine, expiring within 60 days, or expired.

    A card expiring exactly ``EXPIRY_WARNING_DAYS`` days from ``as_of`` warns; one day
    later does not. A missing or impossible expiry is ``UNKNOWN`` (never raises).
    """
    if exp_month is None or exp_year is None:
        return CardExpiry(ExpiryState.UNKNOWN, None, None)
    try:
        last = last_valid_day(exp_month, exp_year)
    except ValueError:
        return CardExpiry(ExpiryState.UNKNOWN, None, None)
    days = (last - as_of).days
    if days < 0:
        state = ExpiryState.EXPIRED
    elif days <= EXPIRY_WARNING_DAYS:
        state = ExpiryState.EXPIRING
    else:
        state = ExpiryState.OK
    return CardExpiry(state, last, days)
