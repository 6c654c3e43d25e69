"""Failed sign-ins counted per client address: a sliding window in Redis (ADR 0019).

The per-account lockout (ADR 0007) stops guessing one account's password. It does not
slow someone who tries one or two common passwords on many accounts (password spraying)
or walks a list of stolen email-password pairs: each account sees few failures. So
failures are also counted per client address, in Redis so every web process on every
machine shares the count. After ADDRESS_LIMIT failures within any ADDRESS_WINDOW, sign-in
from that address is refused until the oldest of them leaves the window, even with a
right password (an answer that depended on the password would keep the guessing useful).

Only failures count: many people behind one office or mobile-carrier address sign in
successfully without using up anyone's allowance. Each address keeps a sorted set of its
latest ADDRESS_LIMIT failure instants (milliseconds), so the window slides like the
per-account one and memory per address stays bounded.

When Redis cannot be reached, sign-in goes on without this count (the per-account
lockout, kept in the database, still holds): a Redis outage must not lock everyone out.
"""

from __future__ import annotations

import logging
import secrets
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


def _key(address: str) -> str:
    return f"{_KEY_PREFIX}:{address}"


def _millis(now: datetime) -> int:
    return int(now.timestamp() * 1000)


def ensure_address_allowed(redis: Redis, address: str, *, now: datetime) -> None:
    """Refuse a sign-in from ``address`` when it used up its failures in the window.

    Reads only. Raises TooManyAttempts (with the time until the oldest failure leaves
    the window).
    """
    now_ms, window_ms = _millis(now), int(ADDRESS_WINDOW.total_seconds() * 1000)
    try:
        recent = redis.zrangebyscore(
            _key(address), f"({now_ms - window_ms}", "+inf", withscores=True
        )
    except RedisError:
        log.warning("sign-in throttle: Redis unreachable, address %s not checked", address)
        return
    if len(recent) >= ADDRESS_LIMIT:
        oldest = int(recent[len(recent) - ADDRESS_LIMIT][1])
        raise TooManyAttempts(timedelta(milliseconds=max(1000, oldest + window_ms - now_ms)))


def record_address_failure(redis: Redis, address: str, *, now: datetime) -> None:
    """Count one failed sign-in from ``address`` at ``now``. Raises nothing."""
    now_ms, window_ms = _millis(now), int(ADDRESS_WINDOW.total_seconds() * 1000)
    key = _key(address)
    try:
        with redis.pipeline() as pipe:
            pipe.zadd(key, {f"{now_ms}:{secrets.token_hex(4)}": now_ms})
            pipe.zremrangebyscore(key, "-inf", now_ms - window_ms)
            pipe.zremrangebyrank(key, 0, -ADDRESS_LIMIT - 1)  # keep the newest LIMIT
            pipe.pexpire(key, window_ms)
            pipe.execute()
    except RedisError:
        log.warning("sign-in throttle: Redis unreachable, failure from %s not counted", address)
