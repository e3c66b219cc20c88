"""Per-destination limits enforced across all workers: ``max_in_flight`` and ``rate_limit_per_s``.

Both are one Lua script each, on Redis' own clock, so every worker sees the
same numbers and no worker clock skew matters:

- in flight: a sorted set of slot tokens scored by their expiry. A slot is
  taken only while fewer than ``max_in_flight`` unexpired tokens exist and is
  removed when the attempt ends; a worker killed mid-attempt leaks its slot
  only until the expiry (the destination's timeout plus a margin).
- rate: a token bucket (capacity ``max(1, rate)``: at most one second of
  burst), refilled continuously at ``rate_limit_per_s``.

A notification that gets no slot or token is not attempted and spends no
attempt: the caller re-queues it for the returned wait.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import redis

from workers.settings import Keys

#: Extra seconds a slot outlives its attempt's timeout before it counts as leaked.
SLOT_MARGIN_S = 15.0
#: Shortest re-queue wait for a notification that found no free slot.
SLOT_RETRY_S = 0.2

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# KEYS[1] slot zset; ARGV[1] limit, ARGV[2] token, ARGV[3] slot ttl s.
# Returns 1 when a slot was taken, else 0.
_ACQUIRE = _NOW + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])) + 1)
return 1
"""

# KEYS[1] bucket hash; ARGV[1] rate per s. Returns "0" (token taken) or the wait in s.
_TAKE = _NOW + """
local rate = tonumber(ARGV[1])
local capacity = math.max(1, rate)
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or '')
local ts = tonumber(redis.call('HGET', KEYS[1], 'ts') or '')
if not tokens then tokens = capacity; ts = now end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 2)
return tostring(wait)
"""


def slots_key(prefix: str, destination: str) -> str:
    return Keys(prefix).inflight_slots(destination)


def bucket_key(prefix: str, destination: str) -> str:
    return Keys(prefix).rate_bucket(destination)


@dataclass(frozen=True, slots=True)
class Slot:
    """One in-flight slot held by an attempt; ``token`` is None when no cap applies."""

    destination: str
    token: str | None


class Limits:
    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix
        self._acquire = client.register_script(_ACQUIRE)
        self._take = client.register_script(_TAKE)

    def acquire_slot(self, destination: str, max_in_flight: int | None, timeout_s: float
                     ) -> Slot | None:
        """A slot for one attempt, or None when ``max_in_flight`` are already running."""
        if max_in_flight is None:
            return Slot(destination, None)
        token = uuid.uuid4().hex
        taken = self._acquire(keys=[slots_key(self.prefix, destination)],
                              args=[max_in_flight, token, timeout_s + SLOT_MARGIN_S])
        return Slot(destination, token) if int(taken) else None

    def release_slot(self, slot: Slot) -> None:
        if slot.token is not None:
            self.client.zrem(slots_key(self.prefix, slot.destination), slot.token)

    def take_token(self, destination: str, rate_per_s: float | None) -> float:
        """0.0 when a token was taken (send now), else seconds until one is due."""
        if rate_per_s is None:
            return 0.0
        return float(self._take(keys=[bucket_key(self.prefix, destination)], args=[rate_per_s]))

    def in_flight(self, destination: str) -> int:
        return int(self.client.zcard(slots_key(self.prefix, destination)))
