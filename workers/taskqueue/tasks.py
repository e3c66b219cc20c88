"""The Celery task: ``recnotify.deliver(event_id, destination)``.

Arguments are ids only (shown as such in Flower); the worker loads the rest.

What Flower shows is what happened to the notification (README "Flower"):

- delivered: SUCCESS, result ``delivered``;
- a failed attempt with another to come: RETRY, with the attempt number and the
  failure (``self.retry`` for short waits; for a wait longer than
  ``RECNOTIFY_MAX_COUNTDOWN_S`` the durable schedule re-enqueues it later as a *new*
  task id, so the RETRY of this id says so);
- parked (open circuit, limits): RETRY, saying why it waits;
- a dead letter: FAILURE raising :class:`~workers.errors.DeadLettered` with the reason
  (declared in ``throws``: one log line at INFO, no traceback; the message is still
  acknowledged, ``task_acks_on_failure_or_timeout``).

The texts carry ids, counts, HTTP statuses and the recorded error only: any URL in an
error is replaced by ``<url>``, and no secret is ever recorded there.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import redis
from celery import Celery, Task
from celery.exceptions import Retry as CeleryRetry

from workers.config.keys import Keys
from workers.errors import DeadLettered, DeliveryError
from workers.http.outcome import Outcome
from workers.http.request import notification_id
from workers.state.codec import as_text
from workers.state.notification import EnqueueMany
from workers.state.schedule import ENQUEUED_AT_HEADER
from workers.taskqueue.enqueue import make_enqueue

#: Longest failure text shown in Flower.
MAX_REASON_CHARS = 300
_URL = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://\S+")


def register(app: Celery) -> None:
    @app.task(  # type: ignore[untyped-decorator]
        name="recnotify.deliver",
        bind=True,
        acks_late=True,
        max_retries=None,
        ignore_result=True,
        shared=False,
        throws=(DeadLettered,),
    )
    def deliver(self: Task, event_id: str, destination: str) -> str:
        from workers.delivery.deliverer import Retry
        from workers.taskqueue.runtime import get_runtime

        runtime = get_runtime(self.app.recnotify_settings)
        deliverer = runtime.deliverer
        # enqueue: an ordered destination's next notification goes on when this one ends
        result: Any = deliverer.run(event_id, destination, enqueue=_enqueue(self.app),
                                    enqueued_at_s=_enqueued_at(self),
                                    task_id=str(self.request.id or "") or None)
        if result is None:
            return "duplicate"
        if result is Outcome.DELIVERED:
            return str(result)
        nid = notification_id(event_id, destination)
        state = read_state(deliverer.redis, deliverer.keys, nid)
        if isinstance(result, Retry):
            # the header tells the watchdog when this message entered the queue
            raise self.retry(countdown=result.countdown_s, max_retries=None,
                             exc=DeliveryError(describe_retry(state, result.countdown_s)),
                             headers={ENQUEUED_AT_HEADER: time.time()})
        if result is Outcome.DEAD:
            raise DeadLettered(describe_dead(state, nid), notification_id=nid,
                               attempts=state.attempts)
        # RETRYING past max_countdown_s (the durable schedule has it) or WAITING (parked):
        # this message is done; the notification comes back later as a new task id
        text = describe_later(state, result)
        raise CeleryRetry(text, exc=DeliveryError(text))


def _enqueued_at(task: Task) -> float | None:
    """When this task's message was enqueued, by its header (None: it has none)."""
    value = getattr(task.request, ENQUEUED_AT_HEADER, None)
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class NotificationState:
    """What the notification's hash and last log entry say after a run (secret-free)."""

    def __init__(self, attempts: int, waiting: str, last: dict[str, Any],
                 reason: str = "") -> None:
        self.attempts = attempts
        self.waiting = waiting
        self.last = last
        #: A dead letter's reason, as recorded (workers/state/writes.py).
        self.reason = reason

    @property
    def last_failure(self) -> str:
        status, error = self.last.get("status"), str(self.last.get("error") or "")
        head = f"HTTP {status}" if status is not None else ""
        if head and error.startswith(head):
            head = ""  # the error already names the status
        return clean(" ".join(p for p in (head, error) if p) or "no answer recorded")


def read_state(client: redis.Redis, keys: Keys, nid: str) -> NotificationState:
    """One round trip (only on the paths that did not deliver); nothing when Redis is down."""
    try:
        pipe = client.pipeline(transaction=False)
        pipe.hmget(keys.notification(nid), ["attempts", "waiting", "reason"])
        pipe.lrange(keys.notification_log(nid), -1, -1)
        (attempts, waiting, reason), last = pipe.execute()
    except redis.RedisError:
        return NotificationState(0, "", {})
    try:
        entry = json.loads(last[0]) if last else {}
    except ValueError:
        entry = {}
    return NotificationState(int(attempts or 0), as_text(waiting),
                             entry if isinstance(entry, dict) else {}, as_text(reason))


def describe_retry(state: NotificationState, countdown_s: float) -> str:
    if state.attempts and state.last:
        return (f"attempt {state.attempts} failed: {state.last_failure}; "
                f"next attempt in {countdown_s:.1f} s")
    return f"waiting {countdown_s:.1f} s before attempt {state.attempts + 1}" + (
        f" ({clean(state.waiting)})" if state.waiting else "")


def describe_later(state: NotificationState, outcome: Any) -> str:
    if outcome is Outcome.RETRYING:
        return (f"attempt {state.attempts} failed: {state.last_failure}; the next attempt "
                "comes from the durable schedule as a new task id")
    why = clean(state.waiting) if state.waiting else "waiting"
    return (f"parked after {state.attempts} attempt(s) ({why}); it goes on as a new task id "
            "when it may")


def describe_dead(state: NotificationState, nid: str) -> str:
    if state.reason:
        return (f"notification {nid} is a dead letter after {state.attempts} attempt(s): "
                f"{clean(state.reason)}")
    last = f"; last: {state.last_failure}" if state.last else ""
    return f"notification {nid} is a dead letter after {state.attempts} attempt(s){last}"


def clean(text: str) -> str:
    """Recorded error text for Flower: no URL, one line, bounded."""
    one_line = " ".join(_URL.sub("<url>", text).split())
    return one_line[:MAX_REASON_CHARS]


_enqueuers: dict[int, EnqueueMany] = {}


def _enqueue(app: Celery) -> EnqueueMany:
    """The worker's batched enqueue (workers.taskqueue.enqueue), built once per app."""
    found = _enqueuers.get(id(app))
    if found is None:
        found = _enqueuers.setdefault(id(app), make_enqueue(app))
    return found
