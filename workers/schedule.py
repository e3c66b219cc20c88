"""The durable retry schedule: a Redis sorted set of notifications due later.

Celery's Redis transport re-delivers a task whose countdown outlasts the
visibility timeout, so waits longer than ``max_countdown_s`` are kept here
instead (score = due time, member = the task's arguments). Every worker runs a
mover that leases due members (their score is pushed ``lease_s`` ahead, so a
mover that dies before enqueueing leaves them due again) and enqueues them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import redis

from workers.state.scripts import Scripts


def watchdog_s(visibility_timeout_s: float, max_countdown_s: float) -> float:
    """How long a dispatched notification may go unseen before it is enqueued again.

    Every dispatched notification is also in the schedule, due this far ahead; a
    delivery moves it (to its next retry) or removes it (delivered, dead). If the
    broker ever drops the task (a Redis restart between BRPOP and the client reading
    the reply; a failed re-queue), the mover enqueues it again: a copy at worst,
    which the notification's state skips.
    """
    return 2 * visibility_timeout_s + max_countdown_s


def schedule_member(event_id: str, destination: str) -> str:
    return json.dumps([event_id, destination], separators=(",", ":"))


class Schedule:
    def __init__(self, client: redis.Redis, key: str, *, lease_s: float = 60.0) -> None:
        self.client = client
        self.key = key
        self.lease_s = lease_s
        self.scripts = Scripts.of(client)

    def add(self, event_id: str, destination: str, due_s: float,
            pipe: redis.client.Pipeline | None = None) -> None:
        target = pipe if pipe is not None else self.client
        target.zadd(self.key, {schedule_member(event_id, destination): due_s})

    def move_due(self, enqueue: Callable[[str, str], None], *, batch: int = 500,
                 now_s: float | None = None) -> int:
        """Enqueue every due notification; returns how many were moved."""
        now = time.time() if now_s is None else now_s
        moved = 0
        while True:
            members = self.scripts.run("schedule_lease", [self.key],
                                       [now, batch, now + self.lease_s])
            if not members:
                return moved
            for member in members:
                event_id, destination = json.loads(member)
                enqueue(event_id, destination)
            self.client.zrem(self.key, *members)
            moved += len(members)
            if len(members) < batch:
                return moved

    def watch(self, pairs: list[tuple[str, str]], due_s: float,
              pipe: redis.client.Pipeline | None = None) -> None:
        """Expect each (event id, destination) to be seen again before ``due_s``."""
        if pairs:
            target = pipe if pipe is not None else self.client
            target.zadd(self.key, {schedule_member(e, d): due_s for e, d in pairs})

    def forget(self, event_id: str, destination: str) -> None:
        self.client.zrem(self.key, schedule_member(event_id, destination))

    def pending(self) -> int:
        return int(self.client.zcard(self.key))
