"""Buffered records on a real Redis: written in batches, kept while the database is down."""

from __future__ import annotations

from typing import Any

import redis

from workers.state.records import Flusher, attempt_record, dead_record


class Sink:
    def __init__(self) -> None:
        self.down = False
        self.attempts: list[dict[str, Any]] = []
        self.dead: list[dict[str, Any]] = []

    def add_attempts(self, rows: list[dict[str, Any]]) -> None:
        if self.down:
            raise ConnectionError("database down")
        self.attempts += rows

    def add_dead_letters(self, rows: list[dict[str, Any]]) -> None:
        if self.down:
            raise ConnectionError("database down")
        self.dead += rows


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
