"""Notifications parked while their destination's circuit is open: no task, no worker slot.

Sending to a destination whose circuit is open is pointless, and so is running a task
only to find that out: on 2 cores a dead destination would otherwise cost each of its
notifications two task runs (one to park, one to dead-letter), taken from the healthy
destinations. So a notification for an open circuit is parked instead of queued:

- by the stream consumer, at dispatch, when the circuit is already open;
- by a delivery task that finds the circuit open (it was queued before it opened).

Redis keys (workers/config/settings.py ``Keys``):

- ``parked:{destination}``: sorted set, member ``[event id, destination]`` (the task's
  arguments), score = its deadline (first try + the span, see ``destinations.model.span_s``);
- ``parked-since:{destination}``: the same members, score = when each was parked;
- ``parked-index``: set of the destinations with parked notifications;
- ``circuits-open``: set of destinations whose circuit is open (workers/state/circuit.py).

Every worker's scheduler loop sweeps the lot (``workers/state/lua/parking_sweep.lua``,
one call per destination, on Redis' clock, so workers sweeping at once never release
or bury a member twice):

- circuit closed (or the destination gone or disabled): every parked notification
  goes to the durable schedule, due now, and is delivered (or dead-lettered) by a task;
- circuit open, reset elapsed, no probe under way: the oldest parked notification is
  released to be the probe (once per open period);
- the circuit rule (SPEC 6 "Circuit"): a parked notification is dead-lettered only when
  its deadline has passed **and** a probe made after it was parked has failed; then in
  bulk, here, with its history (no task run), the reason naming the circuit and the
  failed probe. A notification whose deadline passed while no probe has failed since it
  was parked stays parked until the next probe: released if that probe succeeds, buried
  if it fails. A sweeper that dies mid-way leaves the members it was burying leased for
  ``lease_s``; the next sweep writes them (dead letters are upserts).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
import redis.client

from workers.config.keys import Keys
from workers.destinations.cache import ConfigCache
from workers.destinations.expiry import EXPIRED, expired_reason
from workers.destinations.model import Destination, span_s
from workers.errors import StoreError
from workers.http.request import notification_id
from workers.state.codec import as_text
from workers.state.schedule import schedule_member
from workers.state.scripts import Scripts
from workers.state.writes import NOTIFICATION_TTL_S, queue_dead_letter, queue_waiting

log = logging.getLogger("recnotify.parking")

@dataclass(frozen=True, slots=True)
class Swept:
    released: int = 0
    buried: int = 0


#: Reads an event's JSON from the database by id (Store.get_event_json), None if not kept.
LoadEvent = Callable[[str], "str | None"]


class ParkingLot:
    """Parks notifications of open circuits (consumer and tasks) and sweeps them."""

    def __init__(self, client: redis.Redis, keys: Keys, *, batch: int = 500,
                 lease_s: float = 60.0, dedupe_ttl_s: int = 3600,
                 load_event: LoadEvent | None = None) -> None:
        self.client = client
        self.keys = keys
        self.batch = batch
        self.lease_s = lease_s
        #: a buried notification's hash and log stay this long (Settings.dedupe_window_s)
        self.dedupe_ttl_s = dedupe_ttl_s
        #: an event whose Redis copy expired (the dedupe window): the database's copy
        self.load_event = load_event
        self.scripts = Scripts.of(client)
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
             first_at: float, *, expires_at: float | None = None) -> float:
        """Queue on ``pipe`` what parks one notification; returns its deadline.
        ``expires_at``: when it expires (destinations/expiry.py), the sweep buries it then."""
        deadline = first_at + span_s(dest)
        queue_waiting(pipe, self.keys, nid=notification_id(event_id, dest.name),
                      event_id=event_id, destination=dest.name, first_at=first_at,
                      why="circuit open")
        member = schedule_member(event_id, dest.name)
        pipe.zadd(self.keys.parked(dest.name), {member: deadline})
        pipe.zadd(self.keys.parked_since(dest.name), {member: time.time()}, nx=True)
        pipe.sadd(self.keys.parked_index, dest.name)
        pipe.zrem(self.keys.schedule, member)
        pipe.zrem(self.keys.watchdog, member)  # the lot holds it now: no watchdog
        if expires_at is not None:
            pipe.zadd(self.keys.parked_expiry(dest.name), {member: expires_at})
            pipe.expire(self.keys.parked_expiry(dest.name), NOTIFICATION_TTL_S)
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
            if dest is not None and dest.expire_after_s is not None:
                buried += self.bury_expired(dest)  # first: an expired one is no probe
            reply: Any = self.scripts.run(
                "parking_sweep",
                [self.keys.parked(name), self.keys.parked_since(name), self.keys.parked_index,
                 self.keys.circuit(name), self.keys.schedule, self.keys.circuits_open],
                [name, reset_s, self.batch, self.lease_s, 1 if gone else 0])
            released += int(reply[0])
            members = [as_text(m) for m in reply[3:]]
            if members and dest is not None:
                reason = dead_reason(dest, float(as_text(reply[1])), as_text(reply[2]))
                buried += self.bury(dest, members, reason)
        if released:
            log.info("parking: %d notification(s) released to the queue", released)
        return Swept(released, buried)

    def bury_expired(self, dest: Destination) -> int:
        """Dead-letter ``dest``'s parked notifications whose expiry has passed; how many.

        A notification parked by an open circuit runs no task, so no attempt can find it
        expired: the sweep does. :meth:`park` keeps each parked member's expiry in
        ``parked-expiry:{destination}`` (score: when it expires); ``lua/parking_expire.lua``
        hands back the members due, each buried with its own event type's reason
        (``expired after N s``, kind ``expired``). The circuit rule does not apply: an
        expired notification is not worth a probe's verdict.
        """
        members: Any = self.scripts.run(
            "parking_expire", [self.keys.parked_expiry(dest.name), self.keys.parked(dest.name)],
            [self.batch, self.lease_s])
        if not members:
            return 0
        names = [as_text(m) for m in members]
        return self.bury(dest, names, lambda raw: expired_reason(dest.expire_after_s, raw),
                         kind=EXPIRED)

    def bury(self, dest: Destination, members: Iterable[str],
             reason: str | Callable[[bytes | None], str], *, kind: str = "circuit") -> int:
        """Dead-letter parked notifications whose span ended and whose probe failed (or,
        ``kind`` expired, that expired: ``reason`` is then made from each one's event)."""
        pairs = [tuple(json.loads(m)) for m in members]
        keys = self.keys
        read = self.client.pipeline(transaction=False)
        for event_id, _ in pairs:
            nid = notification_id(event_id, dest.name)
            read.get(keys.event(event_id))
            read.lrange(keys.notification_log(nid), 0, -1)
            read.hmget(keys.notification(nid), "state", "attempts")
        replies = read.execute()
        write = self.client.pipeline(transaction=False)
        buried = 0
        for i, (event_id, _) in enumerate(pairs):
            raw_event, history, (state, attempts) = replies[3 * i: 3 * i + 3]
            if raw_event is None and self.load_event is not None:
                try:
                    found = self.load_event(event_id)
                except StoreError:  # the database is down: this one comes back (its lease)
                    continue
                raw_event = found.encode() if found is not None else None
            member = schedule_member(event_id, dest.name)
            write.zrem(keys.parked(dest.name), member)
            write.zrem(keys.parked_since(dest.name), member)
            write.zrem(keys.parked_expiry(dest.name), member)
            if state in (b"delivered", b"dead"):
                continue  # finished meanwhile by another copy
            nid = notification_id(event_id, dest.name)
            write.zrem(keys.schedule, member)
            write.zrem(keys.watchdog, member)
            why = reason(raw_event) if callable(reason) else reason
            queue_dead_letter(write, keys, nid=nid, event_id=event_id, destination=dest.name,
                              raw_event=raw_event, attempts=int(attempts or 0),
                              history=history, reason=why, kind=kind,
                              ttl_s=self.dedupe_ttl_s)
            log.error("notification %s to %s dead-lettered: %s", nid, dest.name, why)
            buried += 1
        write.execute()
        return buried


def dead_reason(dest: Destination, probe_failed_at: float, probe_error: str) -> str:
    """The dead-letter reason of a notification buried by the circuit rule."""
    made = datetime.fromtimestamp(probe_failed_at, UTC).isoformat(timespec="milliseconds")
    return (f"circuit open: the probe made at {made} failed ({probe_error or 'no answer'}) "
            f"and no attempt succeeded within the retry span of {span_s(dest):g} s")
