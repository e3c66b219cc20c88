"""Notifications parked while their destination's circuit is open: no task, no worker slot.

Sending to a destination whose circuit is open is pointless, and so is running a task
only to find that out: on 2 cores a dead destination would otherwise cost each of its
notifications two task runs (one to park, one to dead-letter), taken from the healthy
destinations. So a notification for an open circuit is parked instead of queued:

- by the stream consumer, at dispatch, when the circuit is already open;
- by a delivery task that finds the circuit open (it was queued before it opened).

Redis keys (workers/settings.py ``Keys``):

- ``parked:{destination}``: sorted set, member ``[event id, destination]`` (the task's
  arguments), score = when it becomes a dead letter (first try + the span, see
  ``attempt.span_s``);
- ``parked-index``: set of the destinations with parked notifications;
- ``circuits-open``: set of destinations whose circuit is open (workers/circuit.py).

Every worker's scheduler loop sweeps the lot (one Lua script per destination, on
Redis' clock, so workers sweeping at once never release or bury a member twice):

- circuit closed (or the destination gone or disabled): every parked notification
  goes to the durable schedule, due now, and is delivered (or dead-lettered) by a task;
- circuit open, reset elapsed, no probe under way: the oldest parked notification is
  released to be the probe (once per open period);
- past its deadline with the circuit still open: dead-lettered in bulk, here, with its
  history (no task run). A sweeper that dies mid-way leaves those members leased for
  ``lease_s``; the next sweep writes them (dead letters are upserts).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis
import redis.client

from workers.attempt import queue_dead_letter, queue_waiting, span_s
from workers.config import ConfigCache
from workers.destination_model import Destination
from workers.request import notification_id
from workers.schedule import schedule_member
from workers.settings import Keys

log = logging.getLogger("recnotify.parking")

# KEYS: parked zset, parked index, circuit hash, schedule zset, circuits-open set.
# ARGV: destination, reset_s, batch, lease_s, release_all (1: gone or disabled).
# Returns {released, buried members...}.
_SWEEP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local batch = tonumber(ARGV[3])
local opened = tonumber(redis.call('HGET', KEYS[3], 'opened_at') or '')
local function release(members)
  for _, m in ipairs(members) do
    redis.call('ZADD', KEYS[4], now, m)
    redis.call('ZREM', KEYS[1], m)
  end
  return #members
end
if ARGV[5] == '1' or not opened then
  if not opened then redis.call('SREM', KEYS[5], ARGV[1]) end
  local n = release(redis.call('ZRANGE', KEYS[1], 0, batch - 1))
  if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[1]) end
  return {n}
end
local reset = tonumber(ARGV[2])
local n = 0
local probe = tonumber(redis.call('HGET', KEYS[3], 'probe_until') or '')
local sent = tonumber(redis.call('HGET', KEYS[3], 'probe_released_at') or '')
if now >= opened + reset and not (probe and probe > now)
   and (not sent or sent < opened or now > sent + math.max(reset, 30)) then
  n = release(redis.call('ZRANGE', KEYS[1], 0, 0))
  if n > 0 then redis.call('HSET', KEYS[3], 'probe_released_at', now) end
end
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, batch)
for _, m in ipairs(due) do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), m)
end
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[1]) end
local out = {n}
for _, m in ipairs(due) do out[#out + 1] = m end
return out
"""


@dataclass(frozen=True, slots=True)
class Swept:
    released: int = 0
    buried: int = 0


class ParkingLot:
    """Parks notifications of open circuits (consumer and tasks) and sweeps them."""

    def __init__(self, client: redis.Redis, keys: Keys, *, batch: int = 500,
                 lease_s: float = 60.0) -> None:
        self.client = client
        self.keys = keys
        self.batch = batch
        self.lease_s = lease_s
        self._sweep = client.register_script(_SWEEP)
        self._open: tuple[float, set[str]] | None = None

    # -- parking -----------------------------------------------------------------------
    def open_circuits(self, *, max_age_s: float = 0.0) -> set[str]:
        """Destinations whose circuit is open (one SMEMBERS, or a value up to ``max_age_s``
        old: a notification that slips through is parked by its task instead)."""
        now = time.monotonic()
        if self._open is not None and now - self._open[0] <= max_age_s:
            return self._open[1]
        members: Any = self.client.smembers(self.keys.circuits_open)
        found = {m.decode() for m in members}
        self._open = (now, found)
        return found

    def park(self, pipe: redis.client.Pipeline, event_id: str, dest: Destination,
             first_at: float) -> float:
        """Queue on ``pipe`` what parks one notification; returns its deadline."""
        deadline = first_at + span_s(dest)
        queue_waiting(pipe, self.keys, nid=notification_id(event_id, dest.name),
                      event_id=event_id, destination=dest.name, first_at=first_at,
                      why="circuit open")
        pipe.zadd(self.keys.parked(dest.name), {schedule_member(event_id, dest.name): deadline})
        pipe.sadd(self.keys.parked_index, dest.name)
        pipe.zrem(self.keys.schedule, schedule_member(event_id, dest.name))  # no watchdog
        return deadline

    def parked(self, destination: str) -> int:
        return int(self.client.zcard(self.keys.parked(destination)))

    # -- the sweep ---------------------------------------------------------------------
    def sweep(self, config: ConfigCache) -> Swept:
        """Release or bury what is due, for every destination with parked notifications."""
        released = buried = 0
        names = sorted(m.decode() for m in self.client.smembers(self.keys.parked_index))  # type: ignore[union-attr]
        for name in names:
            dest = config.get(name)
            gone = dest is None or not dest.enabled
            reset_s = dest.circuit.reset_s if dest is not None else 0.0
            reply: Any = self._sweep(
                keys=[self.keys.parked(name), self.keys.parked_index, self.keys.circuit(name),
                      self.keys.schedule, self.keys.circuits_open],
                args=[name, reset_s, self.batch, self.lease_s, 1 if gone else 0])
            released += int(reply[0])
            members = [m.decode() if isinstance(m, bytes) else str(m) for m in reply[1:]]
            if members and dest is not None:
                buried += self.bury(dest, members)
        if released:
            log.info("parking: %d notification(s) released to the queue", released)
        return Swept(released, buried)

    def bury(self, dest: Destination, members: Iterable[str]) -> int:
        """Dead-letter parked notifications whose span ended with the circuit still open."""
        pairs = [tuple(json.loads(m)) for m in members]
        keys = self.keys
        read = self.client.pipeline(transaction=False)
        for event_id, _ in pairs:
            nkey = keys.notification(notification_id(event_id, dest.name))
            read.get(keys.event(event_id))
            read.lrange(nkey + ":log", 0, -1)
            read.hmget(nkey, "state", "attempts")
        replies = read.execute()
        reason = (f"circuit open: no successful attempt within the retry span of "
                  f"{span_s(dest):g} s")
        write = self.client.pipeline(transaction=False)
        buried = 0
        for i, (event_id, _) in enumerate(pairs):
            raw_event, history, (state, attempts) = replies[3 * i: 3 * i + 3]
            member = schedule_member(event_id, dest.name)
            write.zrem(keys.parked(dest.name), member)
            if state in (b"delivered", b"dead"):
                continue  # finished meanwhile by another copy
            nid = notification_id(event_id, dest.name)
            write.zrem(keys.schedule, member)
            queue_dead_letter(write, keys, nid=nid, event_id=event_id, destination=dest.name,
                              raw_event=raw_event, attempts=int(attempts or 0),
                              history=history, reason=reason, kind="circuit")
            log.error("notification %s to %s dead-lettered: %s", nid, dest.name, reason)
            buried += 1
        write.execute()
        return buried
