"""Ordered delivery per recording, opt-in per destination (SPEC 6 "Ordered destinations").

For a destination with ``ordered: true``, the notifications of one recording
(same UCID, else SESSIONID, else RECORDINGID) wait in a Redis sorted set per
(destination, recording), ordered by their event's stream entry id (members are
``<zero-padded entry id>|<event id>``, compared lexicographically). Only the head
is ever released to the delivery queue, and only when

- no earlier notification of the same pair is in flight (a hash of in-flight
  heads), and
- every stream entry before it has been dispatched: its entry id is below the
  consumer group's oldest pending entry (the *frontier*). Consumers read
  different batches concurrently, so an earlier entry may still be on its way.

Waiting notifications are data in Redis, not tasks: they hold no worker slot.
When the head ends (delivered, or dead with ``on_dead_letter: continue``) it is
removed and the next head released; with ``hold`` a dead head stays until it is
replayed (then delivered) or purged. Pairs that could not release because of
the frontier are remembered in a set that every worker's sweeper re-checks.
Sequence numbers (``X-Recnotify-Sequence``) are assigned at release, in order,
and kept in the notification's hash so every attempt carries the same one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import redis

from workers.config.keys import Keys
from workers.state.codec import as_text
from workers.state.notification import EnqueueMany
from workers.state.scripts import Batch, Scripts

Enqueue = Callable[[str, str], None]


def pad_entry_id(entry_id: str) -> str:
    """``1795554350850-3`` -> a string whose lexicographic order is the stream order."""
    ms, _, seq = entry_id.partition("-")
    return f"{int(ms):016d}-{int(seq or 0):010d}"


FRONTIER_OPEN = "~"  # above every padded id (tests: "nothing before it is pending")
#: Appended to a padded id: sorts after that id's members ("|...") and before the next id.
PAST = "~"
#: How old a cached frontier may be when releasing (it is re-read when it blocks).
FRONTIER_CACHE_S = 0.5


def make_member(entry_id: str, event_id: str, nid: str = "") -> str:
    """``<padded entry id>|<event id>|<notification id>``: sorts in stream order."""
    return f"{pad_entry_id(entry_id)}|{event_id}|{nid}"


def member_event_id(member: str) -> str:
    return member.split("|")[1]


def pair_key(destination: str, recording: str) -> str:
    return f"{destination}\x1f{recording}"


class Ordering:
    """The Redis side of ordered delivery, shared by the consumer and the deliverer."""

    def __init__(self, client: redis.Redis, prefix: str, stream: str, group: str,
                 *, ttl_s: int = 7 * 24 * 3600) -> None:
        from workers.http.request import notification_id

        self._nid = notification_id
        self.redis = client
        self.prefix = prefix
        self.stream = stream
        self.group = group
        self.ttl_s = ttl_s
        self.keys = Keys(prefix)
        self.scripts = Scripts.of(client)
        self._frontier: tuple[float, str] | None = None

    # -- keys (workers.config.settings.Keys) -------------------------------------------------------
    def queue_key(self, pair: str) -> str:
        return self.keys.ord_queue(pair)

    @property
    def inflight_key(self) -> str:
        return self.keys.ord_inflight

    @property
    def blocked_key(self) -> str:
        return self.keys.ord_blocked

    def notification_key(self, event_id: str, destination: str) -> str:
        return self.keys.notification(self._nid(event_id, destination))

    # -- the consumer side -----------------------------------------------------------------
    def add(self, pipe: redis.client.Pipeline, destination: str, recording: str,
            entry_id: str, event_id: str, nid: str = "") -> str:
        """Queue one notification (idempotent: a re-dispatch adds the same member).

        The pair also goes into the set the sweeper re-checks, in the same transaction:
        if the release that follows the dispatch never runs (Redis restarted between the
        two, the consumer died), the sweeper releases its head instead of leaving the
        recording waiting forever. A release that finds a head in flight takes the pair
        out again (that head's finish releases the next)."""
        pair = pair_key(destination, recording)
        key = self.queue_key(pair)
        pipe.zadd(key, {make_member(entry_id, event_id, nid): 0})
        pipe.expire(key, self.ttl_s)
        pipe.sadd(self.blocked_key, pair)
        return pair

    def frontier(self, *, max_age_s: float = 0.0) -> str:
        """Padded id of the oldest entry not yet dispatched, or FRONTIER_OPEN.

        The frontier only moves forward, so a value up to ``max_age_s`` old is a safe
        lower bound: at worst a head waits for the next check, never goes early.
        """
        if max_age_s > 0 and self._frontier is not None:
            taken_at, value = self._frontier
            if time.monotonic() - taken_at <= max_age_s:
                return value
        value = self._read_frontier()
        self._frontier = (time.monotonic(), value)
        return value

    def _read_frontier(self) -> str:
        """The oldest pending entry; with none pending, just past the group's last read one.

        Not "open" when nothing is pending: an entry read a moment later by another
        consumer becomes pending, and a cached "open" would let a later head overtake
        it. Both bounds only move forward, so the value is safe to cache.
        """
        bounds = group_bounds(self.redis, self.stream, self.group)
        if bounds is None:  # no stream or group yet: nothing dispatched
            return ""
        oldest, last_read = bounds
        if oldest:
            return pad_entry_id(oldest)
        return pad_entry_id(last_read or "0-0") + PAST if last_read is not None else ""

    def release(self, pairs: Iterable[str], enqueue: EnqueueMany, frontier: str | None = None
                ) -> int:
        """Release the head of each pair when allowed; returns how many were enqueued.

        One round trip for all the pairs' scripts (a second, with the frontier read
        fresh, for pairs a cached frontier blocked), then one enqueue call for the heads.
        """
        cached = frontier is None
        frontier = self.frontier(max_age_s=FRONTIER_CACHE_S) if frontier is None else frontier
        todo = list(pairs)
        heads: list[tuple[str, str]] = []
        while todo:
            results = self._release_all(todo, frontier)
            blocked = [pair for pair, head in zip(todo, results, strict=True)
                       if head == "!blocked"]
            heads += [(member_event_id(head), pair.split("\x1f", 1)[0])
                      for pair, head in zip(todo, results, strict=True)
                      if head and head != "!blocked"]
            if not (blocked and cached):
                break
            frontier = self.frontier()  # the cached value may just be old: look again
            cached = False
            todo = blocked
        if heads:
            enqueue(heads)
        return len(heads)

    def _release_all(self, pairs: list[str], frontier: str) -> list[str]:
        """Run the release script for every pair in one pipeline; the heads (or '')."""
        now = f"{time.time():.3f}"
        pipe = self.scripts.pipeline()
        for pair in pairs:
            pipe.script("ordering_release",
                        [self.inflight_key, self.blocked_key, self.queue_key(pair)],
                        [self.prefix, pair, frontier, now, self.ttl_s])
        return [as_text(reply) for reply in pipe.execute()]

    def sweep(self, enqueue: EnqueueMany) -> int:
        """Re-check pairs that waited for the frontier (run periodically by every worker)."""
        pairs = [as_text(p) for p in self.redis.smembers(self.blocked_key)]
        return self.release(pairs, enqueue) if pairs else 0

    def resend_stale(self, enqueue: Enqueue, *, stale_after_s: float) -> int:
        """Re-enqueue heads released more than ``stale_after_s`` ago and still in flight.

        Covers a worker killed between releasing a head and enqueueing its task, or a
        task lost by the broker: the head would otherwise block its recording forever.
        A head whose task is merely slow runs twice; the duplicate is skipped by the
        notification's state (and completes the pair if it already ended).
        """
        now = time.time()
        resent = 0
        for raw_pair, raw_value in self.redis.hgetall(self.inflight_key).items():
            member, _, stamp = as_text(raw_value).rpartition("@")
            if stamp == "held" or not member:
                continue
            try:
                released_at = float(stamp)
            except ValueError:
                continue
            if now - released_at < stale_after_s:
                continue
            pair = as_text(raw_pair)
            # refresh the stamp only if unchanged, so two sweepers do not both resend
            if self.scripts.run("ordering_restamp", [self.inflight_key],
                                [pair, as_text(raw_value), f"{member}@{now:.3f}"]):
                enqueue(member_event_id(member), pair.split("\x1f", 1)[0])
                resent += 1
        return resent

    # -- the deliverer side ----------------------------------------------------------------
    def unhold(self, pair: str, member: str, enqueue: EnqueueMany) -> None:
        """A held dead head was purged: drop it and continue with the next."""
        current = as_text(self.redis.hget(self.inflight_key, pair))
        if current == f"{member}@held":
            self.redis.zrem(self.queue_key(pair), member)
            self.redis.hdel(self.inflight_key, pair)
            self.release([pair], enqueue)


def finish_ordered(ordering: Ordering, event_id: str, destination: str, *, hold_dead: bool,
                   enqueue: EnqueueMany) -> None:
    """After a task for an ordered destination: if its notification ended, release the next.

    Called for every run of such a task, duplicates included (idempotent: only the
    in-flight head of its pair can complete), unless the delivery already ran the same
    script on its own last pipeline (:func:`queue_finish`). One script call does it all.
    """
    done = ordering.scripts.run("ordering_finish", _finish_keys(ordering, event_id, destination),
                                _finish_args(ordering, hold_dead))
    after_finish(ordering, done, destination, enqueue)


def _finish_keys(ordering: Ordering, event_id: str, destination: str) -> list[str]:
    """KEYS of the finish script: the notification hash, the in-flight hash, the blocked set."""
    return [ordering.notification_key(event_id, destination), ordering.inflight_key,
            ordering.blocked_key]


def _finish_args(ordering: Ordering, hold_dead: bool) -> list[str | int]:
    """ARGV of the finish script: prefix, hold-dead, frontier (cached), now, ttl."""
    return [ordering.prefix, "1" if hold_dead else "0",
            ordering.frontier(max_age_s=FRONTIER_CACHE_S), f"{time.time():.3f}", ordering.ttl_s]


def queue_finish(ordering: Ordering, pipe: Batch, event_id: str, destination: str, *,
                 hold_dead: bool) -> int:
    """Queue :func:`finish_ordered`'s script on ``pipe``, after the commands that set the
    notification's final state; pass the reply to :func:`after_finish`."""
    return pipe.script("ordering_finish", _finish_keys(ordering, event_id, destination),
                       _finish_args(ordering, hold_dead))


def after_finish(ordering: Ordering, done: Any, destination: str, enqueue: EnqueueMany
                 ) -> None:
    """Enqueue the next head the finish script released (its reply: ``done``)."""
    if not done:
        return
    pair, head = as_text(done[0]), as_text(done[1])
    if head == "!blocked":
        ordering.release([pair], enqueue)  # with a fresh frontier; else the sweeper will
    elif head:
        enqueue([(member_event_id(head), destination)])


def group_bounds(client: redis.Redis, stream: str, group: str) -> tuple[str, str | None] | None:
    """The consumer group's oldest pending entry id (``""`` when none is pending) and the id
    of the last entry it read (None when the group is not on the stream); None when the
    stream does not exist. One round trip. The frontier and the stream trim both use it."""
    pipe = client.pipeline(transaction=False)
    pipe.xpending(stream, group)
    pipe.xinfo_groups(stream)
    try:
        summary, groups = pipe.execute()
    except redis.exceptions.ResponseError:
        return None
    oldest = as_text(summary.get("min")) if summary else ""
    for found in groups:
        if as_text(found.get("name")) == group:
            return oldest, as_text(found.get("last-delivered-id")) or "0-0"
    return oldest, None
