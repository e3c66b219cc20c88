"""Attempt records, dead letters and retained events: buffered in Redis, written to the
database in batches.

The hot path never waits for the database: a delivery appends its record to a
Redis list in the same round trip that updates the notification's state. A
flusher (one at a time across all workers, under a short lock) moves batches to
the database; while the database is down the records simply wait in Redis
(durable as Redis is) and the flusher logs the outage once, then retries.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import redis

from producer.events import Event
from workers.config.keys import Keys
from workers.config.telemetry import flush_span

log = logging.getLogger(__name__)


class RecordSink(Protocol):
    def add_attempts(self, rows: list[dict[str, Any]]) -> None: ...
    def add_dead_letters(self, rows: list[dict[str, Any]]) -> None: ...
    def add_events(self, rows: list[dict[str, Any]]) -> None: ...


def attempt_record(**fields: Any) -> str:
    """``traceparent``: the attempt's span (None, tracing off: left out), which the flush
    span links to (workers/config/telemetry.py)."""
    if fields.get("traceparent", "") is None:
        del fields["traceparent"]
    return json.dumps({"kind": "attempt", **fields}, separators=(",", ":"))


def dead_record(**fields: Any) -> str:
    return json.dumps({"kind": "dead", **fields}, separators=(",", ":"), ensure_ascii=False)


def ucid_of(event: Event) -> str | None:
    """The call's UCID (the database's index of events by call), or None."""
    ucid = event.params.get("UCID")
    return None if ucid in (None, "") else str(ucid)


def event_record(*, event_id: str, entry_id: str, type: str, ucid: str | None,
                 event_json: str, stored_at: float) -> str:
    """A consumed event, for the database's ``events`` table (trace, replay, backfill)."""
    return json.dumps({"kind": "event", "event_id": event_id, "entry_id": entry_id,
                       "type": type, "ucid": ucid, "event_json": event_json,
                       "stored_at": stored_at}, separators=(",", ":"), ensure_ascii=False)


class Flusher:
    """Moves buffered records from ``key`` to the database.

    With ``event_key`` (``Keys.event``) and ``window_s``, an event's Redis copy, kept long
    while only Redis has it, is shortened to the dedupe window once its row is written:
    whatever reads an event finds it in Redis or in the database, never in neither.
    """

    def __init__(self, client: redis.Redis, key: str, sink: RecordSink, *, batch: int = 500,
                 lock_ttl_s: float = 30.0, event_key: Callable[[str], str] | None = None,
                 window_s: int = 3600) -> None:
        self.client = client
        self.key = key
        self.sink = sink
        self.batch = batch
        self.lock_ttl_s = lock_ttl_s
        self.event_key = event_key
        self.window_s = window_s
        self._db_down_since: float | None = None
        self.written = 0

    @classmethod
    def of(cls, client: redis.Redis, keys: Keys, sink: RecordSink, *, window_s: float
           ) -> Flusher:
        """The flusher of ``keys.records``, shortening event copies to ``window_s``."""
        return cls(client, keys.records, sink, event_key=keys.event,
                   window_s=max(1, int(window_s)))

    def flush(self, *, most: int | None = None, deadline: float | None = None) -> int:
        """Write what is buffered (at most ``most`` records, until ``deadline`` on the
        monotonic clock); returns how many were written. One flusher at a time: the lock
        is checked and extended before each batch, so a batch is trimmed only by the
        flusher that read it."""
        token = uuid.uuid4().hex.encode()
        lock = f"{self.key}:lock"
        ttl_ms = int(self.lock_ttl_s * 1000)
        if not self.client.set(lock, token, nx=True, px=ttl_ms):
            return 0
        written = 0
        try:
            while most is None or written < most:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if self.client.get(lock) != token:  # expired and taken by another
                    break
                self.client.pexpire(lock, ttl_ms)
                raw = self.client.lrange(self.key, 0, self.batch - 1)
                if not raw:
                    break
                rows = [json.loads(item) for item in raw]
                try:
                    with flush_span(rows):  # tracing off: a no-op
                        self._write(rows)
                except Exception as exc:  # the database is down: keep the buffer
                    if self._db_down_since is None:
                        self._db_down_since = time.time()
                        log.error("database unavailable, %d+ records kept in Redis until it is "
                                  "back: %s", len(rows), type(exc).__name__)
                    break
                pipe = self.client.pipeline(transaction=False)
                pipe.ltrim(self.key, len(raw), -1)
                if self.event_key is not None:
                    for row in rows:
                        if row.get("kind") == "event":
                            pipe.expire(self.event_key(str(row["event_id"])), self.window_s)
                pipe.execute()
                written += len(raw)
                if self._db_down_since is not None:
                    log.warning("database back after %.0f s; buffered records written",
                                time.time() - self._db_down_since)
                    self._db_down_since = None
                if len(raw) < self.batch:
                    break
        finally:
            if self.client.get(lock) == token:
                self.client.delete(lock)
        self.written += written
        return written

    def drain(self, *, timeout_s: float) -> bool:
        """Write what was buffered when called (not what arrives meanwhile), or wait for
        the flusher that holds the lock to write it, for at most ``timeout_s``; True when
        it is in the database."""
        deadline = time.monotonic() + timeout_s
        left = self.backlog()
        if left == 0:
            return True
        last: Any = self.client.lindex(self.key, left - 1)  # the newest record wanted
        while True:
            self.flush(most=left, deadline=deadline)
            where: Any = self.client.lpos(self.key, last) if last is not None else None
            if where is None:  # written (by this flusher or another)
                return True
            left = int(where) + 1
            if time.monotonic() >= deadline or self._db_down_since is not None:
                return False
            time.sleep(0.05)

    def _write(self, rows: list[Mapping[str, Any]]) -> None:
        attempts = [_strip(r) for r in rows if r.get("kind") == "attempt"]
        dead = [_strip(r) for r in rows if r.get("kind") == "dead"]
        events = [_strip(r) for r in rows if r.get("kind") == "event"]
        if events:  # first: an event's attempts and dead letters may name it
            self.sink.add_events(events)
        if attempts:
            self.sink.add_attempts(attempts)
        if dead:
            self.sink.add_dead_letters(dead)

    def backlog(self) -> int:
        return int(self.client.llen(self.key))


def _strip(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "kind"}
