"""The durable schedule and the watchdog: two Redis sorted sets of notifications.

``schedule`` (score = due time, member = the task's arguments): Celery keeps a task
with a countdown in the worker's memory until it is due (a worker killed meanwhile
loses it, and many such tasks fill its memory), so waits longer than
``max_countdown_s`` are kept here. Every worker runs a mover
that leases due members (their score is pushed ``lease_s`` ahead, so a mover that
dies before enqueueing leaves them due again) and enqueues them.

``watchdog`` (score = when the notification must have been seen again): every
queued notification has an entry (the enqueue writes it, see
``workers.taskqueue.enqueue.TaskBatch``), re-armed when its task starts (``start_s``:
the attempt's longest run) and when it retries after a countdown, removed when it
ends or waits in the schedule or the parking lot. An entry that comes due means the
task was lost (a Redis restart between BRPOP and the client reading the reply, a
failed re-queue, a worker killed while it held the task: prefetched, running or
waiting for its countdown; kombu's own ack emulation is off) -- or that it still
waits in a backlogged queue. :func:`workers.state.notification.watchdog_copy_bound`
tells them apart by the queue's oldest message: a copy is enqueued (same
notification id, so a receiver deduplicates and the state skips a finished one) only
once the queue has moved past the task; until then the entry keeps its score.

The bound (SPEC 6: at most 2 minutes from a fault to the next attempt): a lost
queued task is copied ``RECNOTIFY_WATCHDOG_S`` (60 s) after it was enqueued, a lost running one
when its lock expires (the destination's timeout + 35 s, at most 95 s), both
within one mover period (0.5 s) -- when the queue is not backlogged. Behind a
backlog of B seconds a lost task is copied once the queue has moved past the time it
was armed, max(0, B - RECNOTIFY_WATCHDOG_S) + 5 s after it was due, and the copy then
waits in the queue as any queued work does.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.client

from workers.config.env import DEFAULT_WATCHDOG_S
from workers.config.keys import Keys
from workers.state.codec import as_text
from workers.state.notification import EnqueueMany, watchdog_copy_bound
from workers.state.scripts import Scripts

log = logging.getLogger("recnotify.schedule")

#: The header of every delivery message that says when it was enqueued (Unix seconds).
ENQUEUED_AT_HEADER = "recnotify_enqueued_at"



def schedule_member(event_id: str, destination: str) -> str:
    return json.dumps([event_id, destination], separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Watched:
    """One watchdog check: how many entries were copied."""

    copied: int = 0


class Schedule:
    def __init__(self, client: redis.Redis, keys: Keys, *, lease_s: float = 60.0,
                 watchdog_s: float = DEFAULT_WATCHDOG_S) -> None:
        self.client = client
        self.keys = keys
        self.key = keys.schedule
        self.watchdog_key = keys.watchdog
        self.lease_s = lease_s
        self.watchdog_s = watchdog_s
        self.scripts = Scripts.of(client)

    # -- the schedule ------------------------------------------------------------------
    def add(self, event_id: str, destination: str, due_s: float,
            pipe: redis.client.Pipeline | None = None) -> None:
        """Wait in the schedule until ``due_s`` (and no longer in the watchdog)."""
        target = pipe if pipe is not None else self.client.pipeline(transaction=False)
        member = schedule_member(event_id, destination)
        target.zadd(self.key, {member: due_s})
        target.zrem(self.watchdog_key, member)
        if pipe is None:
            target.execute()

    def move_due(self, enqueue: EnqueueMany, *, batch: int = 500,
                 now_s: float | None = None) -> int:
        """Enqueue every due notification; returns how many were moved."""
        now = time.time() if now_s is None else now_s
        moved = 0
        while True:
            members = self.scripts.run("schedule_lease", [self.key],
                                       [now, batch, now + self.lease_s])
            if not members:
                return moved
            enqueue([_pair(m) for m in members])
            self.client.zrem(self.key, *members)
            moved += len(members)
            if len(members) < batch:
                return moved

    # -- the watchdog ------------------------------------------------------------------
    def watch(self, pairs: Sequence[tuple[str, str]], due_s: float,
              pipe: redis.client.Pipeline | None = None) -> None:
        """Expect each (event id, destination) to be seen again before ``due_s``."""
        if pairs:
            target = pipe if pipe is not None else self.client
            target.zadd(self.watchdog_key, {schedule_member(e, d): due_s for e, d in pairs})

    def rearm(self, pipe: redis.client.Pipeline, event_id: str, destination: str,
              due_s: float) -> None:
        """A task started: move its entry to ``due_s`` (only if it has one: XX)."""
        pipe.zadd(self.watchdog_key, {schedule_member(event_id, destination): due_s}, xx=True)

    def forget(self, event_id: str, destination: str,
               pipe: redis.client.Pipeline | None = None) -> None:
        """It ended (or is parked): neither scheduled nor watched."""
        target = pipe if pipe is not None else self.client.pipeline(transaction=False)
        member = schedule_member(event_id, destination)
        target.zrem(self.key, member)
        target.zrem(self.watchdog_key, member)
        if pipe is None:
            target.execute()

    def check_watchdog(self, enqueue: EnqueueMany, *, batch: int = 500,
                       now_s: float | None = None) -> Watched:
        """Copy the lost notifications among the due entries (those the queue has moved
        past: :func:`watchdog_copy_bound`); the others keep their scores."""
        now = time.time() if now_s is None else now_s
        bound = watchdog_copy_bound(now, self.tail_enqueued_at(), self.watchdog_s)
        # leased: a mover that dies before enqueueing leaves them due again lease_s later
        reply: Any = self.scripts.run("schedule_lease", [self.watchdog_key],
                                      [bound, batch, now + self.lease_s])
        if not reply:
            return Watched()
        copies = [as_text(m) for m in reply]
        enqueue([_pair(m) for m in copies])  # the enqueue re-arms their entries
        self.client.hincrby(self.keys.metric("watchdog"), "copied", len(copies))
        log.warning("watchdog: %d notification(s) not seen for %g s enqueued again "
                    "(same notification ids)", len(copies), self.watchdog_s)
        return Watched(len(copies))

    def tail_enqueued_at(self) -> float | None:
        """When the oldest message of the delivery queue was enqueued (None: the queue is
        empty, or its oldest message does not say)."""
        raw: Any = self.client.lindex(self.keys.deliver_queue, -1)
        if raw is None:
            return None
        try:
            value = json.loads(raw)["headers"].get(ENQUEUED_AT_HEADER)
            return float(value) if value is not None else None
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def _pair(member: Any) -> tuple[str, str]:
    event_id, destination = json.loads(member)
    return str(event_id), str(destination)
