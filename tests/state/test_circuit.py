"""The circuit breaker on a real Redis: shared state, one probe, close on success."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import redis

from workers.config.keys import Keys
from workers.state.circuit import CircuitBreaker, Verdict


def breaker(client: redis.Redis, prefix: str) -> CircuitBreaker:
    return CircuitBreaker(client, Keys(prefix))


def state(cb: CircuitBreaker, destination: str) -> str:
    """``closed``, ``open`` or ``half-open``, as the circuit's hash in Redis says."""
    raw = cb.client.hget(cb.key(destination), "state")
    return raw.decode() if isinstance(raw, bytes) else "closed"


def test_circuit_opens_after_the_configured_consecutive_failures(
        redis_client: redis.Redis, key_prefix: str) -> None:
    cb = breaker(redis_client, key_prefix)
    for _ in range(2):
        cb.record_failure("d", threshold=3, reset_s=30)
    assert cb.admit("d", reset_s=30).verdict is Verdict.CLOSED
    cb.record_failure("d", threshold=3, reset_s=30)
    admission = cb.admit("d", reset_s=30)
    assert admission.verdict is Verdict.OPEN
    assert 25 < admission.wait_s <= 30
    assert state(cb, "d") == "open"


def test_an_answer_between_failures_resets_the_count(
        redis_client: redis.Redis, key_prefix: str) -> None:
    cb = breaker(redis_client, key_prefix)
    cb.record_failure("d", threshold=2, reset_s=30)
    cb.record_success("d")
    cb.record_failure("d", threshold=2, reset_s=30)
    assert cb.admit("d", reset_s=30).allowed


def test_half_open_lets_exactly_one_probe_through_across_workers(
        redis_url: str, key_prefix: str) -> None:
    clients = [redis.Redis.from_url(redis_url) for _ in range(8)]
    first = breaker(clients[0], key_prefix)
    first.record_failure("d", threshold=1, reset_s=0.2)
    time.sleep(0.3)
    with ThreadPoolExecutor(8) as pool:
        verdicts = list(pool.map(lambda c: breaker(c, key_prefix).admit("d", 0.2).verdict,
                                 clients))
    assert verdicts.count(Verdict.PROBE) == 1
    assert verdicts.count(Verdict.OPEN) == 7
    assert state(first, "d") == "half-open"
    for client in clients:
        client.close()


def test_successful_probe_closes_and_failed_probe_reopens(
        redis_client: redis.Redis, key_prefix: str) -> None:
    cb = breaker(redis_client, key_prefix)
    cb.record_failure("ok", threshold=1, reset_s=0.1)
    cb.record_failure("bad", threshold=1, reset_s=0.1)
    time.sleep(0.2)
    assert cb.admit("ok", 0.1).verdict is Verdict.PROBE
    assert cb.admit("bad", 0.1).verdict is Verdict.PROBE
    cb.record_success("ok")
    cb.record_failure("bad", threshold=1, reset_s=0.1, probe=True, error="HTTP 503")
    assert state(cb, "ok") == "closed" and cb.admit("ok", 0.1).verdict is Verdict.CLOSED
    reopened = cb.admit("bad", 0.1)
    assert state(cb, "bad") == "open" and reopened.verdict is Verdict.OPEN
    # the open admission says when the failed probe was made, and how it failed
    assert reopened.probe_failed_at is not None and reopened.probe_error == "HTTP 503"
    assert time.time() - 1 < reopened.probe_failed_at <= time.time()


def test_a_failure_that_was_not_the_probe_does_not_count_as_a_failed_probe(
        redis_client: redis.Redis, key_prefix: str) -> None:
    cb = breaker(redis_client, key_prefix)
    cb.record_failure("d", threshold=1, reset_s=0.1)
    time.sleep(0.2)
    assert cb.admit("d", 0.1).verdict is Verdict.PROBE
    # an attempt admitted before the circuit opened fails while the probe is out
    cb.record_failure("d", threshold=1, reset_s=0.1)
    assert state(cb, "d") == "half-open"
    assert cb.admit("d", 0.1).probe_failed_at is None


def test_a_released_probe_lease_lets_another_worker_probe(
        redis_client: redis.Redis, key_prefix: str) -> None:
    cb = breaker(redis_client, key_prefix)
    cb.record_failure("d", threshold=1, reset_s=0.1)
    time.sleep(0.2)
    assert cb.admit("d", 0.1).verdict is Verdict.PROBE
    assert cb.admit("d", 0.1).verdict is Verdict.OPEN
    cb.release_probe("d")
    assert cb.admit("d", 0.1).verdict is Verdict.PROBE


def test_a_probe_lease_of_a_dead_worker_expires(
        redis_client: redis.Redis, key_prefix: str) -> None:
    cb = CircuitBreaker(redis_client, Keys(key_prefix), probe_lease_s=0.2)
    cb.record_failure("d", threshold=1, reset_s=0.05)
    time.sleep(0.1)
    assert cb.admit("d", 0.05).verdict is Verdict.PROBE
    time.sleep(0.3)  # the prober died without reporting
    assert cb.admit("d", 0.05).verdict is Verdict.PROBE


def test_admission_says_when_a_success_has_nothing_to_reset(
        redis_client: redis.Redis, key_prefix: str) -> None:
    cb = breaker(redis_client, key_prefix)
    assert cb.admit("d", reset_s=30).clean
    cb.record_failure("d", threshold=3, reset_s=30)
    assert not cb.admit("d", reset_s=30).clean  # a success must reset the count
    cb.record_success("d")
    assert cb.admit("d", reset_s=30).clean
