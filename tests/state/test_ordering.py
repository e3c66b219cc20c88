"""Ordered delivery's Redis structures, on a real Redis (no worker)."""

from __future__ import annotations

import contextlib

import redis

from workers.http.request import notification_id
from workers.state.ordering import (
    FRONTIER_OPEN,
    EnqueueMany,
    Ordering,
    finish_ordered,
    make_member,
    pad_entry_id,
)


def collect(sent: list[str]) -> EnqueueMany:
    """An enqueue that records the released heads' event ids."""
    return lambda pairs: sent.extend(event_id for event_id, _ in pairs)


def ordering(redis_client: redis.Redis, prefix: str) -> Ordering:
    return Ordering(redis_client, prefix, f"{prefix}events", f"{prefix}workers")


def dispatched(client: redis.Redis, prefix: str, *entry_ids: str) -> None:
    """Stream entries with these ids, read and acknowledged by the group (dispatched)."""
    for entry_id in entry_ids:
        client.xadd(f"{prefix}events", {"event": "{}"}, id=entry_id)
    with contextlib.suppress(redis.exceptions.ResponseError):  # the group exists already
        client.xgroup_create(f"{prefix}events", f"{prefix}workers", id="0")
    read = client.xreadgroup(f"{prefix}workers", "c", {f"{prefix}events": ">"})
    ids = [entry for entry, _ in read[0][1]] if read else []
    if ids:
        client.xack(f"{prefix}events", f"{prefix}workers", *ids)


def member(entry: str, event: str) -> str:
    return make_member(entry, event, notification_id(event, "face"))


def add(o: Ordering, client: redis.Redis, entry: str, event: str) -> str:
    """Queue a notification of recording u1 to `face`, recording it as the consumer does."""
    nid = notification_id(event, "face")
    pipe = client.pipeline()
    pair = o.add(pipe, "face", "UCID:u1", entry, event, nid)
    pipe.hset(f"{o.prefix}n:{nid}", mapping={"ord_pair": pair, "ord_member": member(entry, event)})
    pipe.execute()
    return pair


def finish(o: Ordering, client: redis.Redis, event: str, state: str, sent: list[str],
           *, hold: bool = False) -> None:
    """The notification of ``event`` ended (``delivered``/``dead``), as the task reports it."""
    client.hset(o.notification_key(event, "face"), "state", state)
    finish_ordered(o, event, "face", hold_dead=hold, enqueue=collect(sent))


def is_held(o: Ordering, client: redis.Redis, pair: str) -> bool:
    return bool((client.hget(o.inflight_key, pair) or b"").endswith(b"@held"))


def test_padded_entry_ids_sort_in_stream_order() -> None:
    ids = ["1795554350850-10", "1795554350850-9", "999-0", "1795554350851-0"]
    assert sorted(ids, key=pad_entry_id) == sorted(
        ids, key=lambda i: tuple(int(x) for x in i.split("-")))
    assert sorted(pad_entry_id(i) for i in ids) == [pad_entry_id(i) for i in
                                                   sorted(ids, key=pad_entry_id)]


def test_only_the_head_is_released_and_the_next_follows_its_completion(
        redis_client: redis.Redis, key_prefix: str) -> None:
    o = ordering(redis_client, key_prefix)
    dispatched(redis_client, key_prefix, "100-0", "100-1", "100-2")
    # Given three notifications of one recording, added out of stream order
    pair = add(o, redis_client, "100-2", "e3")
    add(o, redis_client, "100-0", "e1")
    add(o, redis_client, "100-1", "e2")
    sent: list[str] = []
    # When released: only the earliest goes, and nothing more while it is in flight
    o.release([pair], collect(sent), FRONTIER_OPEN)
    o.release([pair], collect(sent), FRONTIER_OPEN)
    assert sent == ["e1"]
    # Then each completion releases exactly the next one
    finish(o, redis_client, "e1", "delivered", sent)
    finish(o, redis_client, "e2", "delivered", sent)
    assert sent == ["e1", "e2", "e3"]


def test_a_head_behind_the_frontier_waits_and_is_swept_later(
        redis_client: redis.Redis, key_prefix: str) -> None:
    o = ordering(redis_client, key_prefix)
    pair = add(o, redis_client, "200-0", "late")
    sent: list[str] = []
    # an earlier stream entry (150-0) is still pending on another consumer
    o.release([pair], collect(sent), pad_entry_id("150-0"))
    assert sent == [] and redis_client.sismember(o.blocked_key, pair)
    # once the earlier entries and this one are dispatched, the sweeper releases it
    dispatched(redis_client, key_prefix, "150-0", "200-0")
    assert o.sweep(collect(sent)) == 1
    assert sent == ["late"] and not redis_client.sismember(o.blocked_key, pair)


def test_a_dispatch_whose_release_never_ran_is_released_by_the_sweeper(
        redis_client: redis.Redis, key_prefix: str) -> None:
    """Seen in the chaos harness: Redis restarted between the consumer's transaction (the
    entry queued and acknowledged) and its release call; nothing else looked at the pair,
    so the recording's last event was never sent."""
    o = ordering(redis_client, key_prefix)
    dispatched(redis_client, key_prefix, "300-0")
    add(o, redis_client, "300-0", "orphan")  # the consumer's transaction, then it died
    sent: list[str] = []
    assert o.sweep(collect(sent)) == 1 and sent == ["orphan"]
    # with its head in flight, the pair leaves the set: the sweeper does not re-check it
    add(o, redis_client, "301-0", "next")
    assert o.sweep(collect(sent)) == 0 and sent == ["orphan"]
    assert redis_client.scard(o.blocked_key) == 0


def test_completing_a_notification_that_is_not_in_flight_changes_nothing(
        redis_client: redis.Redis, key_prefix: str) -> None:
    o = ordering(redis_client, key_prefix)
    pair = add(o, redis_client, "1-0", "a")
    add(o, redis_client, "2-0", "b")
    sent: list[str] = []
    o.release([pair], collect(sent), FRONTIER_OPEN)
    finish(o, redis_client, "b", "delivered", sent)
    assert sent == ["a"] and redis_client.zcard(o.queue_key(pair)) == 2


def held_recording(redis_client: redis.Redis, key_prefix: str
                   ) -> tuple[Ordering, str, list[str]]:
    """Given a recording whose first notification went and ended dead, with `hold`."""
    o = ordering(redis_client, key_prefix)
    dispatched(redis_client, key_prefix, "1-0", "2-0")
    pair = add(o, redis_client, "1-0", "dead")
    add(o, redis_client, "2-0", "next")
    sent: list[str] = []
    o.release([pair], collect(sent), FRONTIER_OPEN)
    finish(o, redis_client, "dead", "dead", sent, hold=True)
    return o, pair, sent


def test_hold_keeps_the_dead_head_until_it_is_purged(redis_client: redis.Redis,
                                                     key_prefix: str) -> None:
    o, pair, sent = held_recording(redis_client, key_prefix)
    o.sweep(collect(sent))
    assert sent == ["dead"] and is_held(o, redis_client, pair)
    o.unhold(pair, member("1-0", "dead"), collect(sent))
    assert sent == ["dead", "next"]


def test_a_replayed_held_head_completes_and_releases_the_next(redis_client: redis.Redis,
                                                              key_prefix: str) -> None:
    o, pair, sent = held_recording(redis_client, key_prefix)
    assert is_held(o, redis_client, pair)
    # replayed and delivered this time
    finish(o, redis_client, "dead", "delivered", sent, hold=True)
    assert sent == ["dead", "next"]


def test_sequence_numbers_follow_release_order_and_never_change(
        redis_client: redis.Redis, key_prefix: str) -> None:
    o = ordering(redis_client, key_prefix)
    n1, n2 = notification_id("e1", "face"), notification_id("e2", "face")
    pair = add(o, redis_client, "1-0", "e1")
    add(o, redis_client, "2-0", "e2")
    dispatched(redis_client, key_prefix, "1-0", "2-0")
    sent: list[str] = []
    o.release([pair], collect(sent))
    assert redis_client.hget(f"{key_prefix}n:{n1}", "seq") == b"1"
    # the head is delivered: finishing it releases the next, which gets sequence 2
    finish(o, redis_client, "e1", "delivered", sent)
    assert sent == ["e1", "e2"]
    assert redis_client.hget(f"{key_prefix}n:{n2}", "seq") == b"2"
    # a duplicate finish changes nothing, and the first keeps its number
    finish(o, redis_client, "e1", "delivered", sent)
    assert sent == ["e1", "e2"] and redis_client.hget(f"{key_prefix}n:{n1}", "seq") == b"1"


def test_a_head_released_long_ago_and_still_in_flight_is_sent_again(
        redis_client: redis.Redis, key_prefix: str) -> None:
    o = ordering(redis_client, key_prefix)
    pair = add(o, redis_client, "1-0", "lost")
    sent: list[str] = []
    o.release([pair], collect([]), FRONTIER_OPEN)  # released, but its task was lost
    assert o.resend_stale(lambda e, d: sent.append(e), stale_after_s=60) == 0
    redis_client.hset(o.inflight_key, pair, member("1-0", "lost") + "@1000.0")
    assert o.resend_stale(lambda e, d: sent.append(e), stale_after_s=60) == 1
    assert o.resend_stale(lambda e, d: sent.append(e), stale_after_s=60) == 0, "re-stamped"
    assert sent == ["lost"]


def test_a_later_head_never_overtakes_an_entry_another_consumer_is_still_dispatching(
        redis_client: redis.Redis, key_prefix: str) -> None:
    # Given two entries of one recording, and a frontier read before either was read
    o = ordering(redis_client, key_prefix)
    stream, group = f"{key_prefix}events", f"{key_prefix}workers"
    redis_client.xadd(stream, {"event": "{}"}, id="1-0")
    redis_client.xadd(stream, {"event": "{}"}, id="2-0")
    redis_client.xgroup_create(stream, group, id="0")
    o.frontier(max_age_s=60)  # cached: nothing read yet
    # When consumer A reads entry 1 (still dispatching) and consumer B reads and acks entry 2
    redis_client.xreadgroup(group, "A", {stream: ">"}, count=1)
    redis_client.xreadgroup(group, "B", {stream: ">"}, count=1)
    pair = add(o, redis_client, "2-0", "later")
    redis_client.xack(stream, group, "2-0")
    sent: list[str] = []
    o.release([pair], collect(sent))
    # Then the later head waits, even with the old cached frontier
    assert sent == []
    # and once A has queued and acknowledged entry 1, entry 1 goes first
    add(o, redis_client, "1-0", "earlier")
    redis_client.xack(stream, group, "1-0")
    o.release([pair], collect(sent))
    assert sent == ["earlier"]
