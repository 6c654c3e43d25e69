"""A token bucket in Redis, shared by every worker on every machine.

It keeps gateway requests under the processor's limit (Stripe allows about 25 per second
per endpoint by default): each call takes a token, tokens refill at ``rate`` per second up
to ``burst``, and a caller without a token sleeps until one is due.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from redis import Redis

# Returns the milliseconds to wait (0 when a token was taken). Runs atomically in Redis.
_TAKE = """
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', key, 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - at) * rate / 1000)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', key, 'tokens', tokens, 'at', now)
redis.call('PEXPIRE', key, math.ceil(burst * 1000 / rate) + 1000)
return wait
"""


class TokenBucket:
    """``acquire()`` blocks until a request may be sent; ``rate`` is per second."""

    def __init__(self, redis: Redis, name: str, *, rate: int, burst: int | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.redis = redis
        self.key = f"portico:ratelimit:{name}"
        self.rate = rate
        self.burst = burst or max(1, int(rate))
        self._take = redis.register_script(_TAKE)

    def try_acquire(self) -> int:
        """Take a token if one is there; returns 0, or the milliseconds until one is due."""
        now_ms = int(time.time() * 1000)
        return int(self._take(keys=[self.key], args=[self.rate, self.burst, now_ms]))

    def acquire(self, sleep: Callable[[float], None] = time.sleep) -> None:
        """Wait until a token is taken."""
        while True:
            wait_ms = self.try_acquire()
            if wait_ms <= 0:
                return
            sleep(wait_ms / 1000)
