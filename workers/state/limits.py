"""Per-destination limits enforced across all workers: ``max_in_flight`` and ``rate_limit_per_s``.

Both are one Lua script each (``workers/state/lua/slot_acquire.lua`` and
``rate_take.lua``), on Redis' own clock, so every worker sees the same numbers and
no worker clock skew matters:

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

from workers.config.keys import Keys
from workers.state.scripts import Scripts

#: Extra seconds a slot outlives its attempt's timeout before it counts as leaked.
SLOT_MARGIN_S = 15.0
#: Shortest re-queue wait for a notification that found no free slot.
SLOT_RETRY_S = 0.2

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
        self.scripts = Scripts.of(client)

    def acquire_slot(self, destination: str, max_in_flight: int | None, timeout_s: float
                     ) -> Slot | None:
        """A slot for one attempt, or None when ``max_in_flight`` are already running."""
        if max_in_flight is None:
            return Slot(destination, None)
        token = uuid.uuid4().hex
        taken = self.scripts.run("slot_acquire", [slots_key(self.prefix, destination)],
                                 [max_in_flight, token, timeout_s + SLOT_MARGIN_S])
        return Slot(destination, token) if int(taken) else None

    def release_slot(self, slot: Slot) -> None:
        if slot.token is not None:
            self.client.zrem(slots_key(self.prefix, slot.destination), slot.token)

    def take_token(self, destination: str, rate_per_s: float | None) -> float:
        """0.0 when a token was taken (send now), else seconds until one is due."""
        if rate_per_s is None:
            return 0.0
        return float(self.scripts.run("rate_take", [bucket_key(self.prefix, destination)],
                                      [rate_per_s]))

    def in_flight(self, destination: str) -> int:
        return int(self.client.zcard(slots_key(self.prefix, destination)))
