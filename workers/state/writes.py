"""The writes that change a notification's state, each queued on a caller's pipeline.

With the scripts of ``lua/`` (``attempt_conclude``, ``parking_sweep``, the ordering and
circuit scripts) and the enqueue (``workers.taskqueue.enqueue``: the task and its watchdog
entry), these are the writes the table of ``workers/state/notification.py`` names:
a notification's state changes nowhere else.
"""

from __future__ import annotations

import json
import time

import redis.client

from workers.config.keys import Keys
from workers.http.outcome import Outcome
from workers.state.counters import count_wait
from workers.state.records import dead_record

#: An unfinished notification's hash and attempt log expire this long after their last
#: write (a finished one's after the dedupe window, ``Settings.dedupe_window_s``).
NOTIFICATION_TTL_S = 3 * 24 * 3600
#: The waiting reason of a notification held back by its destination's open circuit.
CIRCUIT_OPEN = "circuit open"
#: The dead-letter reason kept in the notification's hash (Flower, trace) is this long at most.
MAX_REASON_CHARS = 300


def event_json_text(raw_event: bytes | None) -> str | None:
    """The event for a dead letter: its JSON, or (a poison entry) its text as a JSON string."""
    if raw_event is None:
        return None
    text = raw_event.decode("utf-8", "replace")
    try:
        json.loads(text)
    except ValueError:
        return json.dumps(text[:65536])
    return text


def queue_waiting(pipe: redis.client.Pipeline, keys: Keys, *, nid: str, event_id: str,
                  destination: str, first_at: float, why: str) -> None:
    """Queue on ``pipe`` what marks a notification as waiting (no attempt spent): its
    state with the reason, its first try's time, and the ``waits`` counter."""
    nkey = keys.notification(nid)
    pipe.hset(nkey, mapping={"state": Outcome.WAITING.value, "event": event_id,
                             "destination": destination, "waiting": why})
    pipe.hsetnx(nkey, "first_at", first_at)
    if why == CIRCUIT_OPEN:
        pipe.hsetnx(nkey, "circuit_since", time.time())
    pipe.expire(nkey, NOTIFICATION_TTL_S)
    pipe.sadd(keys.waiting(destination), nid)
    pipe.expire(keys.waiting(destination), NOTIFICATION_TTL_S)
    count_wait(pipe, keys.metric, destination)


def queue_dead_letter(pipe: redis.client.Pipeline, keys: Keys, *, nid: str, event_id: str,
                      destination: str, raw_event: bytes | None, attempts: int,
                      history: list[bytes], reason: str, kind: str, ttl_s: int) -> None:
    """Queue on ``pipe`` what makes a notification a dead letter: its state, the
    ``dead_letters`` counter (``kind``: final, exhausted, circuit, ...) and the record
    with the event and every attempt (``history``: its log's entries). The hash and the
    log stay ``ttl_s`` (the dedupe window): the database has the dead letter."""
    nkey = keys.notification(nid)
    pipe.hset(nkey, mapping={"state": Outcome.DEAD.value, "attempts": attempts,
                             "event": event_id, "destination": destination,
                             "reason": reason[:MAX_REASON_CHARS]})
    pipe.expire(nkey, ttl_s)
    pipe.expire(keys.notification_log(nid), ttl_s)
    pipe.srem(keys.waiting(destination), nid)
    pipe.hincrby(keys.metric("dead_letters"), f"{destination}|{kind}", 1)
    pipe.rpush(keys.records, dead_record(
        notification_id=nid, event_id=event_id, destination=destination,
        event_json=event_json_text(raw_event),
        attempts_json=json.dumps([json.loads(h) for h in history]), reason=reason,
        created_at=time.time()))


def queue_fresh_attempts(pipe: redis.client.Pipeline, keys: Keys, nid: str) -> None:
    """Queue on ``pipe`` what makes a finished notification new again under its id (a
    replayed dead letter, a backfill): no state, no attempts, a new retry span (no
    ``first_at``), no circuit waits carried over, an empty log, and the expiry clock
    restarted (``replayed_at``: it is wanted now). Its sequence number and ordering
    fields stay: the same notification, fresh attempts."""
    nkey = keys.notification(nid)
    pipe.hdel(nkey, "state", "attempts", "reason", "first_at", "circuit_since",
              "circuit_waited_s", "waiting")
    pipe.hset(nkey, "replayed_at", time.time())
    pipe.expire(nkey, NOTIFICATION_TTL_S)
    pipe.delete(keys.notification_log(nid))
