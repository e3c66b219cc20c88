"""The Deliverer in-process, on a real Redis and a real receiver (no worker process):
each transition of the state machine from one task run, with its Redis writes."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from producer.events import validate_event
from tests.receiver import Receiver
from tests.state.test_parking import Source
from workers.config.env import DEFAULT_WATCHDOG_S as WATCHDOG_S
from workers.config.settings import Settings
from workers.delivery.attempt import LOCK_MARGIN_S
from workers.delivery.deliverer import Deliverer, Retry
from workers.destinations.cache import ConfigCache
from workers.http.netsafety import AddressRules
from workers.http.outcome import Outcome
from workers.http.request import notification_id
from workers.http.transport import Transport
from workers.state.circuit import CircuitBreaker
from workers.state.schedule import schedule_member


class Store:
    """The only store call a delivery makes (410 disables the destination)."""

    def __init__(self) -> None:
        self.disabled: list[str] = []

    def set_enabled(self, name: str, enabled: bool) -> None:
        self.disabled.append(name)


@pytest.fixture
def make(redis_url: str, key_prefix: str, receiver: Receiver) -> Iterator[Any]:
    settings = Settings(redis_url=redis_url, key_prefix=key_prefix)
    client = redis.Redis.from_url(redis_url)

    def build(**dest: Any) -> tuple[Deliverer, Settings]:
        config = ConfigCache(Source({"name": "d", "events": "all", "scope": "global",
                                     "url": receiver.url("/d"), "method": "POST", **dest}))
        config.refresh()
        deliverer = Deliverer(settings, client, config, Transport(pool_maxsize=2),
                              AddressRules(), Store())
        return deliverer, settings

    yield build
    client.close()


E1 = str(uuid.UUID(int=1))


def store_event(client: redis.Redis, settings: Settings, event_id: str) -> None:
    event = validate_event({"id": event_id, "type": "RECORDING_STARTED_EVENT",
                            "params": {"UCID": "u1"}})
    client.set(settings.keys.event(event_id), event.to_json())


def state(client: redis.Redis, settings: Settings, event_id: str) -> dict[bytes, bytes]:
    return client.hgetall(settings.keys.notification(notification_id(event_id, "d")))  # type: ignore[return-value]


def watchdog_due(client: redis.Redis, settings: Settings, event_id: str) -> float | None:
    return client.zscore(settings.keys.watchdog, schedule_member(event_id, "d"))  # type: ignore[return-value]


def test_a_2xx_ends_delivered_with_the_watchdog_entry_gone_and_the_lock_left_to_expire(
        make: Any, redis_client: redis.Redis, receiver: Receiver) -> None:
    deliverer, settings = make()
    store_event(redis_client, settings, E1)
    redis_client.zadd(settings.keys.watchdog, {schedule_member(E1, "d"): time.time() + 60})
    assert deliverer.run(E1, "d") is Outcome.DELIVERED
    (got,) = receiver.received()
    assert got.header("webhook-id") == notification_id(E1, "d")
    assert state(redis_client, settings, E1)[b"state"] == b"delivered"
    assert watchdog_due(redis_client, settings, E1) is None
    # the lock is not released (two commands saved): it expires by itself, within the
    # destination's timeout + LOCK_MARGIN_S
    lock_ttl_ms = redis_client.pttl(settings.keys.lock(notification_id(E1, "d")))
    assert 0 < lock_ttl_ms <= (deliverer.config.get("d").timeout_s + LOCK_MARGIN_S) * 1000
    # a copy of the same task meanwhile is skipped by the final state: no second request
    assert deliverer.run(E1, "d") is None and len(receiver.received()) == 1


def test_a_503_retries_after_a_countdown_and_the_watchdog_waits_for_it(
        make: Any, redis_client: redis.Redis, receiver: Receiver) -> None:
    receiver.script("/d", [503])
    deliverer, settings = make(retry={"max_attempts": 3, "backoff_s": 1, "backoff_max_s": 1})
    store_event(redis_client, settings, E1)
    before = time.time()
    result = deliverer.run(E1, "d")
    assert isinstance(result, Retry) and 0 < result.countdown_s <= 2
    assert state(redis_client, settings, E1)[b"state"] == b"retrying"
    due = watchdog_due(redis_client, settings, E1)
    assert due is not None and due >= before + result.countdown_s + WATCHDOG_S


def test_an_open_circuit_past_the_span_parks_until_a_probe_made_since_has_failed(
        make: Any, redis_client: redis.Redis, receiver: Receiver) -> None:
    """The task side of the circuit rule (SPEC 6 "Circuit")."""
    deliverer, settings = make(retry={"max_attempts": 2, "backoff_s": 0.1, "backoff_max_s": 0.1},
                               circuit={"failures": 1, "reset_s": 30})
    keys = settings.keys
    store_event(redis_client, settings, E1)
    nkey = keys.notification(notification_id(E1, "d"))
    breaker = CircuitBreaker(redis_client, keys)
    breaker.record_failure("d", threshold=1, reset_s=30)
    # Given a notification whose span ended long ago, meeting the open circuit
    redis_client.hset(nkey, mapping={"first_at": time.time() - 600, "attempts": 1})
    # Then it is parked (no probe was made since it began waiting), not dead
    assert deliverer.run(E1, "d") is Outcome.WAITING
    assert redis_client.zcard(keys.parked("d")) == 1 and receiver.received() == []
    assert redis_client.hget(nkey, "state") == b"waiting"
    # When a probe made after that fails, and the notification's task runs again
    redis_client.zrem(keys.parked("d"), schedule_member(E1, "d"))
    redis_client.hset(keys.circuit("d"), mapping={"probe_until": time.time() + 60,
                                                  "probe_at": time.time()})
    breaker.record_failure("d", threshold=1, reset_s=30, probe=True, error="HTTP 503")
    assert deliverer.run(E1, "d") is Outcome.DEAD
    (record,) = [json.loads(r) for r in redis_client.lrange(keys.records, 0, -1)
                 if json.loads(r)["kind"] == "dead"]
    assert record["reason"].startswith("circuit open: the probe made at ")
    assert "(HTTP 503)" in record["reason"] and receiver.received() == []


def test_a_410_ends_dead_and_disables_the_destination(
        make: Any, redis_client: redis.Redis, receiver: Receiver) -> None:
    receiver.script("/d", [410])
    deliverer, settings = make()
    store_event(redis_client, settings, E1)
    assert deliverer.run(E1, "d") is Outcome.DEAD
    assert deliverer.store.disabled == ["d"]
    assert state(redis_client, settings, E1)[b"state"] == b"dead"


def test_a_copy_that_finds_the_lock_taken_looks_again_later_without_sending(
        make: Any, redis_client: redis.Redis, receiver: Receiver) -> None:
    deliverer, settings = make()
    store_event(redis_client, settings, E1)
    redis_client.set(settings.keys.lock(notification_id(E1, "d")), "other", px=5000)
    result = deliverer.run(E1, "d")
    assert isinstance(result, Retry) and result.countdown_s >= 0.5
    assert receiver.received() == []
    assert redis_client.get(settings.keys.lock(notification_id(E1, "d"))) == b"other"


def test_a_first_attempt_refused_as_the_probe_buries_nothing_a_refused_retry_does(
        make: Any, redis_client: redis.Redis, receiver: Receiver) -> None:
    """A receiver that refuses first attempts and accepts retries is not a dead one: a fresh
    notification's refused probe re-opens the circuit but condemns nothing parked."""
    from workers.state.parking import ParkingLot

    receiver.script("/d", [503, 503])
    deliverer, settings = make(retry={"max_attempts": 5, "backoff_s": 0.1, "backoff_max_s": 0.1},
                               circuit={"failures": 1, "reset_s": 0.2})
    keys = settings.keys
    probe_id, parked_id = str(uuid.UUID(int=2)), str(uuid.UUID(int=3))
    for event_id in (probe_id, parked_id):
        store_event(redis_client, settings, event_id)
    breaker = CircuitBreaker(redis_client, keys)
    breaker.record_failure("d", threshold=1, reset_s=0.2)
    # Given a notification parked long ago (its span is over), with the circuit open
    lot = ParkingLot(redis_client, keys)
    pipe = redis_client.pipeline()
    lot.park(pipe, parked_id, deliverer.config.get("d"), time.time() - 600)  # type: ignore[arg-type]
    pipe.execute()
    time.sleep(0.25)
    # When a fresh notification is the probe and its first attempt is refused
    assert isinstance(deliverer.run(probe_id, "d"), Retry)
    assert breaker.admit("d", 0.2).probe_failed_at is None
    # Then the sweep buries nothing
    assert lot.sweep(deliverer.config).buried == 0 and lot.parked("d") == 1
    # When the same notification, now a retry, is the probe and is refused again
    time.sleep(0.25)
    assert isinstance(deliverer.run(probe_id, "d"), Retry)
    # Then that failure counts: the parked notification is a dead letter naming it
    assert lot.sweep(deliverer.config).buried == 1
    assert len(receiver.received()) == 2


def test_time_waited_on_an_open_circuit_does_not_eat_the_retry_span(
        make: Any, redis_client: redis.Redis, receiver: Receiver) -> None:
    receiver.script("/d", [503])
    deliverer, settings = make(retry={"max_attempts": 5, "backoff_s": 0.1, "backoff_max_s": 0.1})
    store_event(redis_client, settings, E1)
    nkey = settings.keys.notification(notification_id(E1, "d"))
    # Given a notification that waited on the circuit for all but 1 s of the last 10 minutes
    redis_client.hset(nkey, mapping={"first_at": time.time() - 600,
                                     "circuit_since": time.time() - 599})
    # When it is attempted at last and refused, it still has its retries (not dead)
    assert isinstance(deliverer.run(E1, "d"), Retry)
    assert redis_client.hget(nkey, "state") == b"retrying"
    waited = float(redis_client.hget(nkey, "circuit_waited_s") or 0)  # type: ignore[arg-type]
    assert 598 < waited < 601 and redis_client.hget(nkey, "circuit_since") is None


def test_each_attempt_keeps_2_kib_of_the_answer_with_the_destinations_secrets_masked(
        redis_url: str, key_prefix: str, redis_client: redis.Redis) -> None:
    """What an operator asks first (issue 15): what did the receiver say? Bounded, and a
    receiver that echoes the request cannot put a secret into the record or the page."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Echo(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = (f"echo: {self.headers.get('X-Api-Key')} {self.path} ".encode()
                    + b"x" * 5000)
            self.send_response(503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings = Settings(redis_url=redis_url, key_prefix=key_prefix)
        config = ConfigCache(Source({
            "name": "d", "events": "all", "scope": "global", "method": "POST",
            "url": f"http://user:pa55word@127.0.0.1:{server.server_port}/hook",
            "headers": {"X-Api-Key": {"value": "top-secret-key", "secret": True}},
            "retry": {"max_attempts": 2, "backoff_s": 1, "backoff_max_s": 1}}))
        config.refresh()
        deliverer = Deliverer(settings, redis_client, config, Transport(pool_maxsize=2),
                              AddressRules(), Store())
        store_event(redis_client, settings, E1)
        assert isinstance(deliverer.run(E1, "d"), Retry)
    finally:
        server.shutdown()
    (record,) = [json.loads(r) for r in redis_client.lrange(settings.keys.records, 0, -1)]
    assert record["status"] == 503 and 2000 < len(record["response"]) <= 2048
    assert record["response"].startswith("echo: **** /hook")
    assert "top-secret-key" not in json.dumps(record) and "pa55word" not in json.dumps(record)
    # the Redis attempt log stays small: the answer goes to the database only
    log_entry = redis_client.lindex(settings.keys.notification_log(notification_id(E1, "d")), 0)
    assert log_entry is not None and b"echo" not in log_entry


def test_a_notification_counts_as_waiting_from_a_failed_attempt_until_it_ends(
        make: Any, redis_client: redis.Redis, receiver: Receiver) -> None:
    """The admin page's per-destination "waiting" count (issue 15)."""
    receiver.script("/d", [503, 200])
    deliverer, settings = make(retry={"max_attempts": 3, "backoff_s": 0.1, "backoff_max_s": 0.1})
    store_event(redis_client, settings, E1)
    waiting = settings.keys.waiting("d")
    nid = notification_id(E1, "d")
    assert isinstance(deliverer.run(E1, "d"), Retry)
    assert redis_client.smembers(waiting) == {nid.encode()}
    assert deliverer.run(E1, "d") is Outcome.DELIVERED
    assert redis_client.scard(waiting) == 0


def test_the_conclude_writes_skipped_for_a_fresh_hash_are_still_made_for_a_used_one(
        make: Any, redis_client: redis.Redis, receiver: Receiver) -> None:
    """attempt_conclude skips HSETNX / HDEL / SREM by what the run's first read saw: a
    fresh notification still gets its first_at; one that waited loses its reasons."""
    receiver.script("/d", [503, 200, 200])
    deliverer, settings = make(retry={"max_attempts": 3, "backoff_s": 0.1, "backoff_max_s": 0.1})
    store_event(redis_client, settings, E1)
    assert isinstance(deliverer.run(E1, "d"), Retry)
    first_at = state(redis_client, settings, E1)[b"first_at"]
    # as a gate's wait or the circuit would leave it (workers.state.writes.queue_waiting)
    nkey = settings.keys.notification(notification_id(E1, "d"))
    redis_client.hset(nkey, mapping={"state": "waiting", "waiting": "rate limit",
                                     "circuit_since": time.time()})
    assert deliverer.run(E1, "d") is Outcome.DELIVERED
    after = state(redis_client, settings, E1)
    assert after[b"first_at"] == first_at and after[b"attempts"] == b"2"
    assert b"waiting" not in after and b"circuit_since" not in after
    assert redis_client.scard(settings.keys.waiting("d")) == 0
    # a fresh one, delivered at once: its first_at is written with the state
    e2 = str(uuid.UUID(int=2))
    store_event(redis_client, settings, e2)
    assert deliverer.run(e2, "d") is Outcome.DELIVERED
    fresh = state(redis_client, settings, e2)
    assert fresh[b"state"] == b"delivered" and float(fresh[b"first_at"]) > 0


@pytest.mark.parametrize("queued_for_s, rearmed", [(0.0, False), (30.0, True), (None, True)])
def test_a_task_taken_soon_after_its_enqueue_keeps_its_watchdog_entry_one_from_a_backlog_is_rearmed(
        make: Any, redis_client: redis.Redis, queued_for_s: float | None, rearmed: bool) -> None:
    """The entry the enqueue armed (``WATCHDOG_S`` after it) already outlasts the lock of a
    fresh task: no ZADD then. A task that waited in a backlog, or whose enqueue time is
    not known, is re-armed to its lock's expiry as before."""
    deliverer, settings = make()
    seen: list[float | None] = []
    send = deliverer.transport.send

    def spying(*args: Any, **kwargs: Any) -> Any:
        seen.append(watchdog_due(redis_client, settings, E1))
        return send(*args, **kwargs)

    deliverer.transport.send = spying  # type: ignore[method-assign]
    store_event(redis_client, settings, E1)
    now = time.time()
    enqueued_at = None if queued_for_s is None else now - queued_for_s
    armed = (enqueued_at if enqueued_at is not None else now - 30) + WATCHDOG_S
    redis_client.zadd(settings.keys.watchdog, {schedule_member(E1, "d"): armed})
    assert deliverer.run(E1, "d", enqueued_at_s=enqueued_at) is Outcome.DELIVERED
    (during,) = seen
    assert during is not None
    assert (during != armed) is rearmed
    if rearmed:  # the lock's expiry (timeout 10 s + margin 30 s) + 5 s
        assert now + 40 < during < time.time() + 46
    assert watchdog_due(redis_client, settings, E1) is None
