"""The parking lot on a real Redis: notifications of an open circuit wait without a task,
then are released (circuit closed, or as the probe) or dead-lettered in bulk."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from workers.config.keys import Keys
from workers.destinations import parse_destination
from workers.destinations.cache import ConfigCache
from workers.http.request import notification_id
from workers.state.circuit import CircuitBreaker
from workers.state.parking import ParkingLot
from workers.state.schedule import schedule_member


class Source:
    def __init__(self, *dests: dict[str, Any]) -> None:
        self.dests = [parse_destination(d) for d in dests]

    def version(self) -> int:
        return 1

    def list_destinations(self) -> list[Any]:
        return self.dests


def dest(name: str = "d", **extra: Any) -> dict[str, Any]:
    return {"name": name, "events": "all", "scope": "global", "url": "http://127.0.0.1:9/x",
            **extra}


def setup(client: redis.Redis, prefix: str, *dests: dict[str, Any]
          ) -> tuple[Keys, ParkingLot, CircuitBreaker, ConfigCache]:
    keys = Keys(prefix)
    config = ConfigCache(Source(*(dests or (dest(),))))
    config.refresh()
    breaker = CircuitBreaker(client, keys)
    return keys, ParkingLot(client, keys), breaker, config


def park(client: redis.Redis, lot: ParkingLot, config: ConfigCache, event_ids: list[str],
         first_at: float, name: str = "d") -> None:
    pipe = client.pipeline(transaction=True)
    for event_id in event_ids:
        lot.park(pipe, event_id, config.get(name), first_at)  # type: ignore[arg-type]
    pipe.execute()


def scheduled(client: redis.Redis, keys: Keys) -> list[str]:
    return [json.loads(m)[0] for m in client.zrange(keys.schedule, 0, -1)]


def test_the_open_set_follows_the_circuit(redis_client: redis.Redis, key_prefix: str) -> None:
    _, lot, breaker, _ = setup(redis_client, key_prefix)
    breaker.record_failure("d", threshold=2, reset_s=30)
    assert lot.open_circuits() == set()
    breaker.record_failure("d", threshold=2, reset_s=30)
    assert lot.open_circuits() == {"d"}
    breaker.record_success("d")
    assert lot.open_circuits() == set()


def test_closed_circuit_releases_every_parked_notification_to_the_schedule(
        redis_client: redis.Redis, key_prefix: str) -> None:
    # Given three notifications parked while the circuit was open, then closed
    keys, lot, breaker, config = setup(redis_client, key_prefix)
    breaker.record_failure("d", threshold=1, reset_s=30)
    park(redis_client, lot, config, ["e1", "e2", "e3"], time.time())
    assert lot.parked("d") == 3
    breaker.record_success("d")
    # When the lot is swept
    swept = lot.sweep(config)
    # Then all three are due now in the schedule, and the lot and its index are empty
    assert swept.released == 3 and swept.buried == 0
    assert sorted(scheduled(redis_client, keys)) == ["e1", "e2", "e3"]
    assert lot.parked("d") == 0 and not redis_client.smembers(keys.parked_index)


def test_open_circuit_releases_one_probe_per_open_period_and_keeps_the_rest(
        redis_client: redis.Redis, key_prefix: str) -> None:
    keys, lot, breaker, config = setup(redis_client, key_prefix,
                                       dest(circuit={"failures": 1, "reset_s": 1}))
    breaker.record_failure("d", threshold=1, reset_s=1)
    park(redis_client, lot, config, ["e1", "e2", "e3"], time.time())
    # Before reset_s: nothing moves
    assert lot.sweep(config).released == 0 and scheduled(redis_client, keys) == []
    time.sleep(1.1)
    # After it: exactly one, the oldest, goes as the probe; a second sweep adds none
    assert lot.sweep(config).released == 1
    assert lot.sweep(config).released == 0
    assert len(scheduled(redis_client, keys)) == 1 and lot.parked("d") == 2
    # When the probe fails the circuit re-opens; the next period releases the next probe
    breaker.admit("d", reset_s=1)
    breaker.record_failure("d", threshold=1, reset_s=1, probe=True, error="HTTP 503")
    assert lot.sweep(config).released == 0
    time.sleep(1.1)
    assert lot.sweep(config).released == 1 and lot.parked("d") == 1


def test_past_their_span_they_stay_parked_until_a_probe_made_after_parking_fails(
        redis_client: redis.Redis, key_prefix: str) -> None:
    """SPEC 6 "Circuit": the regression of a sweep that buried parked notifications of a
    receiver that had recovered, before the probe's result was known."""
    keys, lot, breaker, config = setup(
        redis_client, key_prefix,
        dest(retry={"max_attempts": 2, "backoff_s": 0.1, "backoff_max_s": 0.1},
             circuit={"failures": 1, "reset_s": 1}))
    for event_id in ("e0", "e1", "e2", "e3"):
        redis_client.set(keys.event(event_id), json.dumps({"id": event_id, "type": "X"}))
    breaker.record_failure("d", threshold=1, reset_s=1)
    # Given two notifications whose span is over (e0 the older) and one within it
    park(redis_client, lot, config, ["e0"], time.time() - 62)
    park(redis_client, lot, config, ["e1"], time.time() - 61)
    park(redis_client, lot, config, ["e2"], time.time() + 600)
    # When the lot is swept before any probe was made: nothing is buried
    assert lot.sweep(config).buried == 0 and lot.parked("d") == 3
    # When reset_s has passed, the oldest goes as the probe (and nothing is buried yet)
    time.sleep(1.1)
    swept = lot.sweep(config)
    assert (swept.released, swept.buried) == (1, 0) and scheduled(redis_client, keys) == ["e0"]
    # And that probe fails
    assert breaker.admit("d", reset_s=1).verdict.value == "probe"
    breaker.record_failure("d", threshold=1, reset_s=1, probe=True, error="HTTP 503")
    # A notification parked after the failed probe, though past its span, is not buried
    park(redis_client, lot, config, ["e3"], time.time() - 61)
    # Then the next sweep buries e1 alone: parked before the failed probe and past its span
    swept = lot.sweep(config)
    assert swept.buried == 1 and lot.parked("d") == 2
    nid = notification_id("e1", "d")
    assert redis_client.hget(keys.notification(nid), "state") == b"dead"
    (record,) = [json.loads(r) for r in redis_client.lrange(keys.records, 0, -1)]
    assert record["kind"] == "dead" and record["notification_id"] == nid
    assert record["reason"].startswith("circuit open: the probe made at ")
    assert "failed (HTTP 503)" in record["reason"]
    assert json.loads(record["event_json"])["id"] == "e1"
    assert redis_client.hget(keys.metric("dead_letters"), "d|circuit") == b"1"
    for event_id in ("e2", "e3"):
        assert redis_client.hget(keys.notification(notification_id(event_id, "d")),
                                 "state") == b"waiting"


def test_a_successful_probe_releases_every_parked_notification_past_its_span_or_not(
        redis_client: redis.Redis, key_prefix: str) -> None:
    keys, lot, breaker, config = setup(
        redis_client, key_prefix, dest(circuit={"failures": 1, "reset_s": 1}))
    breaker.record_failure("d", threshold=1, reset_s=1)
    park(redis_client, lot, config, ["e0", "e1"], time.time() - 600)
    park(redis_client, lot, config, ["e2"], time.time())
    time.sleep(1.1)
    assert lot.sweep(config).released == 1  # the probe
    assert breaker.admit("d", reset_s=1).verdict.value == "probe"
    breaker.record_success("d")
    swept = lot.sweep(config)
    assert (swept.released, swept.buried) == (2, 0) and lot.parked("d") == 0
    assert sorted(scheduled(redis_client, keys)) == ["e0", "e1", "e2"]


def test_a_disabled_or_removed_destination_releases_its_lot_for_the_tasks_to_conclude(
        redis_client: redis.Redis, key_prefix: str) -> None:
    keys, lot, breaker, config = setup(redis_client, key_prefix, dest())
    breaker.record_failure("d", threshold=1, reset_s=60)
    park(redis_client, lot, config, ["e1"], time.time())
    removed = ConfigCache(Source(dest("other")))
    removed.refresh()
    assert lot.sweep(removed).released == 1
    assert scheduled(redis_client, keys) == ["e1"]


def test_parking_replaces_the_watchdog_entry(redis_client: redis.Redis, key_prefix: str
                                             ) -> None:
    keys, lot, _, config = setup(redis_client, key_prefix)
    redis_client.zadd(keys.watchdog, {schedule_member("e1", "d"): time.time() + 200})
    park(redis_client, lot, config, ["e1"], time.time())
    assert redis_client.zcard(keys.watchdog) == 0 and lot.parked("d") == 1
