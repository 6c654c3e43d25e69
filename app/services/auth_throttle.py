"""Failed sign-ins counted per client address: a fixed window in Redis (ADR 0019).

The per-account lockout (ADR 0007) stops guessing one account's password. It does not
slow someone who tries one or two common passwords on many accounts (password spraying)
or walks a list of stolen email-password pairs: each account sees few failures. So
failures are also counted per client address, in Redis so every web process on every
machine shares the count. Past ADDRESS_LIMIT failures within an ADDRESS_WINDOW, sign-in
from that address is refused until the window ends, even with a right password (an
answer that depended on the password would keep the guessing useful).

Only failures count: many people behind one office or mobile-carrier address sign in
successfully without using up anyone's allowance. The window is fixed (it resets on the
clock, e.g. every ten minutes), which may let up to twice the limit through around a
boundary; that still slows a sprayer from thousands of tries an hour to about a hundred.

When Redis cannot be reached, sign-in goes on without this count (the per-account
lockout, kept in the database, still holds): a Redis outage must not lock everyone out.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Final

from redis import Redis
from redis.exceptions import RedisError

from app.domain.errors import DomainError

ADDRESS_LIMIT: Final = 20
ADDRESS_WINDOW: Final = timedelta(minutes=10)
_KEY_PREFIX: Final = "portico:signin-failures"

log = logging.getLogger(__name__)


class TooManyAttempts(DomainError):
    """This address failed to sign in too often within the window."""

    status_code = 429

    def __init__(self, retry_after: timedelta) -> None:
        minutes = max(1, int(retry_after.total_seconds() + 59) // 60)
        super().__init__(
            "Too many failed sign-in attempts from your network. "
            f"Try again in {minutes} minute{'s' if minutes != 1 else ''}, "
            "or sign in with an emailed link."
        )
        self.retry_after = retry_after


def _window(now: datetime) -> tuple[int, timedelta]:
    """The number of the window holding ``now`` and the time left until it ends."""
    length = int(ADDRESS_WINDOW.total_seconds())
    stamp = int(now.timestamp())
    return stamp // length, timedelta(seconds=length - stamp % length)


def _key(address: str, window: int) -> str:
    return f"{_KEY_PREFIX}:{window}:{address}"


def ensure_address_allowed(redis: Redis, address: str, *, now: datetime) -> None:
    """Refuse a sign-in from ``address`` when it used up its failures in this window.

    Reads only. Raises TooManyAttempts (with the time until the window ends).
    """
    window, left = _window(now)
    try:
        failures = int(redis.get(_key(address, window)) or 0)
    except RedisError:
        log.warning("sign-in throttle: Redis unreachable, address %s not checked", address)
        return
    if failures >= ADDRESS_LIMIT:
        raise TooManyAttempts(left)


def record_address_failure(redis: Redis, address: str, *, now: datetime) -> None:
    """Count one failed sign-in from ``address`` in the current window. Raises nothing."""
    window, _left = _window(now)
    key = _key(address, window)
    try:
        with redis.pipeline() as pipe:
            pipe.incr(key)
            pipe.expire(key, int(ADDRESS_WINDOW.total_seconds()) * 2)
            pipe.execute()
    except RedisError:
        log.warning("sign-in throttle: Redis unreachable, failure from %s not counted", address)
