"""Buffered records on a real Redis: written in batches, kept while the database is down."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

from workers.config.keys import Keys
from workers.state.records import Flusher, attempt_record, dead_record, event_record


class Sink:
    def __init__(self) -> None:
        self.down = False
        self.attempts: list[dict[str, Any]] = []
        self.dead: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []
        #: called after each batch of attempts is stored (a test's hook: take the lock
        #: away, push more records)
        self.after_attempts: Callable[[], None] | None = None

    def add_attempts(self, rows: list[dict[str, Any]]) -> None:
        if self.down:
            raise ConnectionError("database down")
        self.attempts += rows
        if self.after_attempts is not None:
            self.after_attempts()

    def add_dead_letters(self, rows: list[dict[str, Any]]) -> None:
        if self.down:
            raise ConnectionError("database down")
        self.dead += rows

    def add_events(self, rows: list[dict[str, Any]]) -> None:
        if self.down:
            raise ConnectionError("database down")
        self.events += rows


def test_records_wait_in_redis_while_the_database_is_down_and_are_written_after(
        redis_client: redis.Redis, key_prefix: str) -> None:
    key = key_prefix + "records"
    sink = Sink()
    flusher = Flusher(redis_client, key, sink, batch=3)
    for i in range(5):
        redis_client.rpush(key, attempt_record(notification_id=f"n{i}", attempt=1))
    redis_client.rpush(key, dead_record(notification_id="n9", reason="gone"))
    sink.down = True
    assert flusher.flush() == 0
    assert flusher.backlog() == 6
    sink.down = False
    assert flusher.flush() == 6
    assert flusher.backlog() == 0
    assert [r["notification_id"] for r in sink.attempts] == [f"n{i}" for i in range(5)]
    assert sink.dead == [{"notification_id": "n9", "reason": "gone"}]


def test_only_one_flusher_writes_at_a_time(redis_client: redis.Redis, key_prefix: str) -> None:
    key = key_prefix + "records"
    redis_client.rpush(key, attempt_record(notification_id="n1"))
    redis_client.set(f"{key}:lock", "someone-else")
    sink = Sink()
    assert Flusher(redis_client, key, sink).flush() == 0
    assert sink.attempts == [] and redis_client.llen(key) == 1


def event(n: int) -> str:
    return event_record(event_id=f"e{n}", entry_id=f"{n}-0", type="RECORDING_STARTED_EVENT",
                        ucid=None, event_json="{}", stored_at=0.0)


def test_an_event_copy_stays_long_until_its_row_is_written_then_only_the_window(
        redis_client: redis.Redis, key_prefix: str) -> None:
    keys = Keys(key_prefix)
    sink = Sink()
    flusher = Flusher.of(redis_client, keys, sink, window_s=60)
    for n in range(3):
        redis_client.set(keys.event(f"e{n}"), "{}", ex=3 * 86400)
        redis_client.rpush(keys.records, event(n))
    sink.down = True
    flusher.flush()
    assert all(redis_client.ttl(keys.event(f"e{n}")) > 86400 for n in range(3))
    sink.down = False
    assert flusher.flush() == 3
    assert [r["event_id"] for r in sink.events] == ["e0", "e1", "e2"]
    assert all(0 < redis_client.ttl(keys.event(f"e{n}")) <= 60 for n in range(3))


def test_a_flusher_that_lost_its_lock_trims_nothing_more(
        redis_client: redis.Redis, key_prefix: str) -> None:
    key = key_prefix + "records"
    for i in range(6):
        redis_client.rpush(key, attempt_record(notification_id=f"n{i}"))
    sink = Sink()
    flusher = Flusher(redis_client, key, sink, batch=2)
    calls: list[int] = []

    def steal() -> None:  # after the second batch, another flusher owns the lock
        calls.append(1)
        if len(calls) == 2:
            redis_client.set(f"{key}:lock", "another")

    sink.after_attempts = steal
    assert flusher.flush() == 4  # its two batches; the third is the other flusher's
    assert redis_client.llen(key) == 2
    assert redis_client.get(f"{key}:lock") == b"another"


def test_a_drain_writes_what_was_buffered_when_called_not_what_arrives_meanwhile(
        redis_client: redis.Redis, key_prefix: str) -> None:
    key = key_prefix + "records"
    for i in range(5):
        redis_client.rpush(key, attempt_record(notification_id=f"n{i}"))
    sink = Sink()

    def busy() -> None:  # a busy system: a record arrives with every batch written
        redis_client.rpush(key, attempt_record(notification_id="later"))

    sink.after_attempts = busy
    assert Flusher(redis_client, key, sink, batch=2).drain(timeout_s=5)
    written = [r["notification_id"] for r in sink.attempts]
    assert written[:5] == [f"n{i}" for i in range(5)]
    assert len(written) <= 6 + 1  # it stopped at its watermark, not at an empty list
    assert redis_client.llen(key) >= 1


def test_a_drain_waits_for_the_flusher_that_holds_the_lock(
        redis_client: redis.Redis, key_prefix: str) -> None:
    key = key_prefix + "records"
    redis_client.rpush(key, attempt_record(notification_id="n0"))
    redis_client.set(f"{key}:lock", "another", px=300)  # another flusher, then it is gone
    sink = Sink()
    assert Flusher(redis_client, key, sink).drain(timeout_s=5)
    assert [r["notification_id"] for r in sink.attempts] == ["n0"]
    redis_client.rpush(key, attempt_record(notification_id="n1"))
    redis_client.set(f"{key}:lock", "another")  # held for good: the drain gives up in time
    assert not Flusher(redis_client, key, sink).drain(timeout_s=0.3)
