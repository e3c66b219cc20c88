"""The durable schedule on a real Redis: due members are enqueued once, the watchdog re-enqueues."""

from __future__ import annotations

import time

import pytest
import redis

from workers.schedule import Schedule, watchdog_s


def test_due_notifications_are_enqueued_and_removed_later_ones_stay(
        redis_client: redis.Redis, key_prefix: str) -> None:
    schedule = Schedule(redis_client, key_prefix + "schedule")
    now = time.time()
    schedule.add("e1", "d", now - 1)
    schedule.add("e2", "d", now + 3600)
    moved: list[tuple[str, str]] = []
    assert schedule.move_due(lambda e, d: moved.append((e, d)), now_s=now) == 1
    assert moved == [("e1", "d")]
    assert schedule.pending() == 1


def test_a_mover_that_dies_mid_move_leaves_its_members_due_again_after_the_lease(
        redis_client: redis.Redis, key_prefix: str) -> None:
    schedule = Schedule(redis_client, key_prefix + "schedule", lease_s=0.2)
    schedule.add("e1", "d", time.time() - 1)

    def crash(event_id: str, destination: str) -> None:
        raise RuntimeError("mover killed")

    with pytest.raises(RuntimeError):
        schedule.move_due(crash)
    assert schedule.move_due(lambda e, d: None) == 0  # leased, not yet due again
    time.sleep(0.3)
    moved: list[tuple[str, str]] = []
    assert schedule.move_due(lambda e, d: moved.append((e, d))) == 1
    assert moved == [("e1", "d")]


def test_watched_notification_is_enqueued_again_unless_forgotten(
        redis_client: redis.Redis, key_prefix: str) -> None:
    schedule = Schedule(redis_client, key_prefix + "schedule")
    now = time.time()
    schedule.watch([("lost", "d"), ("done", "d")], now - 1)
    schedule.forget("done", "d")  # delivered: no longer watched
    moved: list[tuple[str, str]] = []
    schedule.move_due(lambda e, d: moved.append((e, d)))
    assert moved == [("lost", "d")]


def test_watchdog_outlasts_the_visibility_timeout_and_the_longest_countdown() -> None:
    assert watchdog_s(100, 30) > 100 + 30
