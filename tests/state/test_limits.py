"""max_in_flight and rate_limit_per_s on a real Redis, shared by many clients."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import redis

from workers.state.limits import Limits, slots_key


def test_in_flight_cap_admits_at_most_the_limit_across_clients(
        redis_url: str, key_prefix: str) -> None:
    clients = [redis.Redis.from_url(redis_url) for _ in range(10)]
    with ThreadPoolExecutor(10) as pool:
        slots = list(pool.map(lambda c: Limits(c, key_prefix).acquire_slot("d", 3, 5.0),
                              clients))
    taken = [s for s in slots if s is not None]
    assert len(taken) == 3
    limits = Limits(clients[0], key_prefix)
    assert limits.acquire_slot("d", 3, 5.0) is None
    limits.release_slot(taken[0])
    assert limits.acquire_slot("d", 3, 5.0) is not None
    for client in clients:
        client.close()


def test_a_slot_leaked_by_a_killed_worker_frees_itself_after_its_expiry(
        redis_client: redis.Redis, key_prefix: str) -> None:
    limits = Limits(redis_client, key_prefix)
    # a slot that expires right away stands for a worker killed mid-attempt
    redis_client.zadd(slots_key(key_prefix, "d"), {"dead-worker": time.time() - 1})
    assert limits.acquire_slot("d", 1, 5.0) is not None
    assert limits.in_flight("d") == 1


def test_no_cap_means_every_attempt_gets_a_slot(
        redis_client: redis.Redis, key_prefix: str) -> None:
    limits = Limits(redis_client, key_prefix)
    slots = [limits.acquire_slot("d", None, 5.0) for _ in range(100)]
    assert all(s is not None and s.token is None for s in slots)
    assert limits.take_token("d", None) == 0.0


def test_token_bucket_grants_about_the_rate_and_says_how_long_to_wait(
        redis_client: redis.Redis, key_prefix: str) -> None:
    limits = Limits(redis_client, key_prefix)
    granted = [limits.take_token("d", 5.0) for _ in range(20)]
    assert granted.count(0.0) == 5  # one second of burst, no more
    assert all(0 < wait <= 0.2 for wait in granted if wait)
    time.sleep(0.45)
    refilled = [limits.take_token("d", 5.0) for _ in range(5)]
    assert 1 <= refilled.count(0.0) <= 3


def test_token_bucket_is_shared_by_concurrent_clients(
        redis_url: str, key_prefix: str) -> None:
    clients = [redis.Redis.from_url(redis_url) for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        waits = list(pool.map(lambda c: [Limits(c, key_prefix).take_token("d", 2.0)
                                         for _ in range(5)], clients))
    assert sum(w.count(0.0) for w in waits) == 2
    for client in clients:
        client.close()
