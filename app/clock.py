"""The one place Portico reads the wall clock.

Services and jobs take ``as_of`` dates; only the edges (views, the scheduler, row
timestamps) call these functions, so tests can pin time by passing dates explicitly.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo


def utcnow() -> datetime:
    """The current instant, timezone-aware UTC."""
    return datetime.now(UTC)


def local_today(timezone: str) -> date:
    """Today's date in ``timezone`` (an IANA name such as ``America/New_York``)."""
    return utcnow().astimezone(ZoneInfo(timezone)).date()


def local_day(timezone: str, instant: datetime) -> date:
    """The date of ``instant`` in ``timezone`` (an IANA name)."""
    return instant.astimezone(ZoneInfo(timezone)).date()
