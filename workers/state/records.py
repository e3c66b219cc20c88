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
from collections.abc import Mapping
from typing import Any, Protocol

import redis

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


def event_record(*, event_id: str, entry_id: str, type: str, ucid: str | None,
                 event_json: str, stored_at: float) -> str:
    """A consumed event, for the database's ``events`` table (trace, replay, backfill)."""
    return json.dumps({"kind": "event", "event_id": event_id, "entry_id": entry_id,
                       "type": type, "ucid": ucid, "event_json": event_json,
                       "stored_at": stored_at}, separators=(",", ":"), ensure_ascii=False)


class Flusher:
    """Moves buffered records from ``key`` to the database."""

    def __init__(self, client: redis.Redis, key: str, sink: RecordSink, *, batch: int = 500,
                 lock_ttl_s: float = 30.0) -> None:
        self.client = client
        self.key = key
        self.sink = sink
        self.batch = batch
        self.lock_ttl_s = lock_ttl_s
        self._db_down_since: float | None = None
        self.written = 0

    def flush(self) -> int:
        """Write what is buffered; returns how many records were written."""
        token = uuid.uuid4().hex
        lock = f"{self.key}:lock"
        if not self.client.set(lock, token, nx=True, px=int(self.lock_ttl_s * 1000)):
            return 0
        written = 0
        try:
            while True:
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
                self.client.ltrim(self.key, len(raw), -1)
                written += len(raw)
                if self._db_down_since is not None:
                    log.warning("database back after %.0f s; buffered records written",
                                time.time() - self._db_down_since)
                    self._db_down_since = None
                if len(raw) < self.batch:
                    break
        finally:
            if self.client.get(lock) == token.encode():
                self.client.delete(lock)
        self.written += written
        return written

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

    def drain(self, *, timeout_s: float) -> bool:
        """Flush until nothing is buffered (another process may hold the flush lock: then
        wait for it), for at most ``timeout_s``; True when the buffer emptied."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.flush()
            if self.backlog() == 0:
                return True
            if time.monotonic() >= deadline or self._db_down_since is not None:
                return False
            time.sleep(0.05)

    def backlog(self) -> int:
        return int(self.client.llen(self.key))


def _strip(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "kind"}
