"""The durable schedule and the watchdog on a real Redis: due members are enqueued once;
a lost task is copied, a task still queued behind a backlog is not."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import pytest
import redis

from workers.config.env import DEFAULT_WATCHDOG_S as WATCHDOG_S
from workers.config.keys import Keys
from workers.state.notification import QUEUE_GRACE_S
from workers.state.schedule import ENQUEUED_AT_HEADER, Schedule, schedule_member


class Recorder:
    def __init__(self) -> None:
        self.pairs: list[tuple[str, str]] = []

    def __call__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.pairs.extend(pairs)


def queue_message(client: redis.Redis, keys: Keys, enqueued_at: float) -> None:
    """A delivery message as the enqueue writes it (only the header matters here)."""
    client.lpush(keys.deliver_queue, json.dumps({"headers": {ENQUEUED_AT_HEADER: enqueued_at}}))


def test_due_notifications_are_enqueued_and_removed_later_ones_stay(
        redis_client: redis.Redis, key_prefix: str) -> None:
    keys = Keys(key_prefix)
    schedule = Schedule(redis_client, keys)
    now = time.time()
    schedule.add("e1", "d", now - 1)
    schedule.add("e2", "d", now + 3600)
    moved = Recorder()
    assert schedule.move_due(moved, now_s=now) == 1
    assert moved.pairs == [("e1", "d")]
    assert redis_client.zcard(keys.schedule) == 1


def test_a_mover_that_dies_mid_move_leaves_its_members_due_again_after_the_lease(
        redis_client: redis.Redis, key_prefix: str) -> None:
    schedule = Schedule(redis_client, Keys(key_prefix), lease_s=0.2)
    schedule.add("e1", "d", time.time() - 1)

    def crash(pairs: Sequence[tuple[str, str]]) -> None:
        raise RuntimeError("mover killed")

    with pytest.raises(RuntimeError):
        schedule.move_due(crash)
    assert schedule.move_due(Recorder()) == 0  # leased, not yet due again
    time.sleep(0.3)
    moved = Recorder()
    assert schedule.move_due(moved) == 1
    assert moved.pairs == [("e1", "d")]


def test_a_lost_task_is_copied_once_its_watchdog_is_due_unless_it_ended(
        redis_client: redis.Redis, key_prefix: str) -> None:
    schedule = Schedule(redis_client, Keys(key_prefix))
    now = time.time()
    schedule.watch([("lost", "d"), ("done", "d")], now - 1)
    schedule.forget("done", "d")  # delivered: no longer watched
    copies = Recorder()
    assert schedule.check_watchdog(copies).copied == 1  # the queue is empty: it was lost
    assert copies.pairs == [("lost", "d")]


def test_behind_a_backlog_the_watchdog_leaves_queued_work_alone_and_copies_once_passed(
        redis_client: redis.Redis, key_prefix: str) -> None:
    keys = Keys(key_prefix)
    schedule = Schedule(redis_client, keys)
    now = time.time()
    # Given a task enqueued WATCHDOG_S + 5 s ago, behind a message enqueued before it
    armed_at = now - 5 - WATCHDOG_S
    queue_message(redis_client, keys, armed_at - 1)
    schedule.watch([("queued", "d")], armed_at + WATCHDOG_S)
    # When its watchdog entry comes due, the queue has not reached it yet: no copy, and
    # the entry keeps the score it was armed with (it is not pushed back)
    copies = Recorder()
    assert schedule.check_watchdog(copies).copied == 0 and copies.pairs == []
    assert redis_client.zscore(keys.watchdog, schedule_member("queued", "d")) == pytest.approx(
        armed_at + WATCHDOG_S)
    # Still not once the queue's oldest message is newer by less than the grace (a task
    # just taken waits a moment in its worker's memory before its run re-arms the entry)
    redis_client.delete(keys.deliver_queue)
    queue_message(redis_client, keys, armed_at + QUEUE_GRACE_S / 2)
    assert schedule.check_watchdog(copies).copied == 0
    # When the queue has moved past it however long the backlog still is (its oldest
    # message is newer, by the grace, yet older than WATCHDOG_S), the task was lost
    redis_client.delete(keys.deliver_queue)
    queue_message(redis_client, keys, armed_at + QUEUE_GRACE_S + 1)
    assert schedule.check_watchdog(copies).copied == 1 and copies.pairs == [("queued", "d")]
    assert redis_client.hget(keys.metric("watchdog"), "copied") == b"1"


def test_a_started_task_moves_its_entry_but_creates_none(
        redis_client: redis.Redis, key_prefix: str) -> None:
    keys = Keys(key_prefix)
    schedule = Schedule(redis_client, keys)
    schedule.watch([("e1", "d")], time.time() + 10)
    pipe = redis_client.pipeline()
    schedule.rearm(pipe, "e1", "d", 12345.0)
    schedule.rearm(pipe, "gone", "d", 12345.0)  # ended already: its copy re-arms nothing
    pipe.execute()
    assert redis_client.zrange(keys.watchdog, 0, -1, withscores=True) == [
        (schedule_member("e1", "d").encode(), 12345.0)]


def test_a_long_wait_in_the_schedule_is_not_watched(
        redis_client: redis.Redis, key_prefix: str) -> None:
    keys = Keys(key_prefix)
    schedule = Schedule(redis_client, keys)
    schedule.watch([("e1", "d")], time.time() - 1)
    schedule.add("e1", "d", time.time() + 600)
    assert redis_client.zcard(keys.watchdog) == 0
    assert schedule.check_watchdog(Recorder()).copied == 0
