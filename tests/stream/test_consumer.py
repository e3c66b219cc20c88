"""The stream consumer on a real Redis (the enqueue step is captured, not Celery)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from producer import Publisher
from workers.config.settings import Settings
from workers.destinations import parse_destination
from workers.destinations.cache import ConfigCache
from workers.state.entries import entry_event_id
from workers.stream.consumer import StreamConsumer


class FakeSource:
    """Destinations as the store would give them (the store has its own tests)."""

    def __init__(self, *dests: dict[str, object]) -> None:
        self.dests = [parse_destination(d) for d in dests]

    def version(self) -> int:
        return 1

    def list_destinations(self) -> list:  # type: ignore[type-arg]
        return self.dests


class Captured:
    def __init__(self, fail: bool = False) -> None:
        self.tasks: list[tuple[str, str]] = []
        self.fail = fail

    def __call__(self, pairs: Sequence[tuple[str, str]]) -> None:
        if self.fail:
            raise redis.exceptions.ConnectionError("broker down")
        self.tasks.extend(pairs)


@pytest.fixture
def settings(redis_url: str, key_prefix: str, tmp_path: Path) -> Settings:
    return Settings.from_env({}, redis_url=redis_url, key_prefix=key_prefix,
                             data_dir=tmp_path, claim_idle_s=0.2, node_name="c1")


def make(settings: Settings, enqueue: Captured, *dests: dict[str, object]) -> StreamConsumer:
    config = ConfigCache(FakeSource(*dests))
    config.refresh()
    consumer = StreamConsumer(settings, redis.Redis.from_url(settings.redis_url), config,
                              enqueue, block_ms=50)
    consumer.ensure_group()
    return consumer


GLOBAL = {"name": "g", "events": "all", "scope": "global", "url": "http://127.0.0.1:9/x"}
ROUTE = {"name": "r", "events": "all", "scope": "route:r1", "url": "http://127.0.0.1:9/y"}


def test_one_task_per_matching_destination_then_the_entry_is_acknowledged(
        settings: Settings, redis_client: redis.Redis) -> None:
    enqueue = Captured()
    consumer = make(settings, enqueue, GLOBAL, ROUTE)
    event_id = Publisher(settings.redis_url, key_prefix=settings.key_prefix).publish(
        "RECORDING_STARTED_EVENT", route="r1")
    consumer.step()
    consumer.step()
    assert sorted(enqueue.tasks) == [(event_id, "g"), (event_id, "r")]
    assert redis_client.xpending(settings.keys.events, settings.keys.group)["pending"] == 0
    stored = json.loads(redis_client.get(settings.keys.event(event_id)) or b"{}")
    assert stored["id"] == event_id and stored["route"] == "r1"


def test_an_entry_whose_tasks_could_not_be_enqueued_stays_pending(
        settings: Settings, redis_client: redis.Redis) -> None:
    consumer = make(settings, Captured(fail=True), GLOBAL)
    Publisher(settings.redis_url, key_prefix=settings.key_prefix).publish(
        "RECORDING_STARTED_EVENT")
    consumer._read_own_pending = False
    with pytest.raises(redis.exceptions.ConnectionError):
        consumer.step()
    assert redis_client.xpending(settings.keys.events, settings.keys.group)["pending"] == 1
    # and the same consumer re-reads its own pending entry once the broker is back
    consumer.enqueue = recovered = Captured()
    consumer._read_own_pending = True
    consumer.step()
    assert len(recovered.tasks) == 1
    assert redis_client.xpending(settings.keys.events, settings.keys.group)["pending"] == 0


def test_entries_left_pending_by_a_dead_consumer_are_claimed(
        settings: Settings, redis_client: redis.Redis) -> None:
    dead = make(settings, Captured(fail=True), GLOBAL)
    event_id = Publisher(settings.redis_url, key_prefix=settings.key_prefix).publish(
        "RECORDING_STARTED_EVENT")
    dead._read_own_pending = False
    with pytest.raises(redis.exceptions.ConnectionError):
        dead.step()  # read, never acknowledged: the consumer "died"
    survivor_enqueue = Captured()
    survivor = make(replace(settings, node_name="c2"), survivor_enqueue, GLOBAL)
    time.sleep(0.3)  # longer than claim_idle_s
    assert survivor.claim_stale() == 1
    assert survivor_enqueue.tasks == [(event_id, "g")]
    assert redis_client.xpending(settings.keys.events, settings.keys.group)["pending"] == 0


def test_events_xadded_without_id_get_the_same_id_on_every_read(
        settings: Settings, redis_client: redis.Redis) -> None:
    entry = redis_client.xadd(settings.keys.events,
                              {"event": json.dumps({"type": "RECORDING_ENDED_EVENT"})}).decode()
    enqueue = Captured()
    consumer = make(settings, enqueue, GLOBAL)
    consumer.step()  # own pending entries first (none)
    consumer.step()
    assert enqueue.tasks == [(entry_event_id(settings.keys.events, entry), "g")]


def test_a_vanished_group_is_recreated_and_the_loss_is_logged(
        settings: Settings, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    enqueue = Captured()
    consumer = make(settings, enqueue, GLOBAL)
    stop = threading.Event()
    thread = threading.Thread(target=consumer.run, args=(stop,), daemon=True)
    thread.start()
    try:
        time.sleep(0.2)
        redis_client.xgroup_destroy(settings.keys.events, settings.keys.group)
        time.sleep(0.3)
        event_id = Publisher(settings.redis_url, key_prefix=settings.key_prefix).publish(
            "RECORDING_STARTED_EVENT")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not enqueue.tasks:
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(5)
    assert enqueue.tasks == [(event_id, "g")]
    assert "LOST" in caplog.text
    errors = [r for r in caplog.records if "is gone" in r.getMessage()]
    assert 1 <= len(errors) <= 3, "no tight error loop"


def test_trimming_never_drops_a_pending_entry(settings: Settings,
                                              redis_client: redis.Redis) -> None:
    short = replace(settings, stream_retention_s=0)
    consumer = make(short, Captured(fail=True), GLOBAL)
    Publisher(settings.redis_url, key_prefix=settings.key_prefix).publish(
        "RECORDING_STARTED_EVENT")
    consumer._read_own_pending = False
    with pytest.raises(redis.exceptions.ConnectionError):
        consumer.step()
    consumer.trim()
    assert redis_client.xlen(settings.keys.events) == 1


def test_trimming_never_drops_an_entry_no_consumer_has_read(
        settings: Settings, redis_client: redis.Redis) -> None:
    consumer = make(replace(settings, stream_retention_s=0), Captured(), GLOBAL)
    Publisher(settings.redis_url, key_prefix=settings.key_prefix).publish(
        "RECORDING_STARTED_EVENT")
    time.sleep(0.01)
    consumer.trim()
    assert redis_client.xlen(settings.keys.events) == 1
