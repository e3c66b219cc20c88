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

import redis

# KEYS: zset, inflight hash, blocked set. ARGV: pair, frontier, now
_RELEASE = """
local current = redis.call('HGET', KEYS[2], ARGV[1])
if current then return false end
local head = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
if not head then
  redis.call('SREM', KEYS[3], ARGV[1])
  return false
end
if head >= ARGV[2] then
  redis.call('SADD', KEYS[3], ARGV[1])
  return false
end
redis.call('HSET', KEYS[2], ARGV[1], head .. '@' .. ARGV[3])
redis.call('SREM', KEYS[3], ARGV[1])
return head
"""

# KEYS: zset, inflight hash. ARGV: pair, member, hold (0/1)
_COMPLETE = """
local current = redis.call('HGET', KEYS[2], ARGV[1])
if not current then return 0 end
local member = string.match(current, '^(.*)@[^@]*$')
if member ~= ARGV[2] then return 0 end
if ARGV[3] == '1' then
  redis.call('HSET', KEYS[2], ARGV[1], member .. '@held')
  return 2
end
redis.call('ZREM', KEYS[1], member)
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""

# KEYS: notification hash, sequence counter. Assign once.
_SEQUENCE = """
local seq = redis.call('HGET', KEYS[1], 'seq')
if seq then return tonumber(seq) end
seq = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'seq', seq)
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[1]))
return seq
"""

# KEYS: inflight hash. ARGV: pair, expected value, new value (compare-and-set)
_RESTAMP = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
"""

Enqueue = Callable[[str, str], None]


def pad_entry_id(entry_id: str) -> str:
    """``1795554350850-3`` -> a string whose lexicographic order is the stream order."""
    ms, _, seq = entry_id.partition("-")
    return f"{int(ms):016d}-{int(seq or 0):010d}"


FRONTIER_OPEN = "~"  # above every padded id: nothing is pending


def make_member(entry_id: str, event_id: str) -> str:
    return f"{pad_entry_id(entry_id)}|{event_id}"


def member_event_id(member: str) -> str:
    return member.split("|", 1)[1]


def pair_key(destination: str, recording: str) -> str:
    return f"{destination}\x1f{recording}"


class Ordering:
    """The Redis side of ordered delivery, shared by the consumer and the deliverer."""

    def __init__(self, client: redis.Redis, prefix: str, stream: str, group: str,
                 *, ttl_s: int = 7 * 24 * 3600) -> None:
        from workers.request import notification_id

        self._nid = notification_id
        self.redis = client
        self.prefix = prefix
        self.stream = stream
        self.group = group
        self.ttl_s = ttl_s
        self._release = client.register_script(_RELEASE)
        self._complete = client.register_script(_COMPLETE)
        self._sequence = client.register_script(_SEQUENCE)
        self._restamp = client.register_script(_RESTAMP)

    # -- keys ------------------------------------------------------------------------------
    def queue_key(self, pair: str) -> str:
        return f"{self.prefix}ord:q:{pair}"

    @property
    def inflight_key(self) -> str:
        return f"{self.prefix}ord:inflight"

    @property
    def blocked_key(self) -> str:
        return f"{self.prefix}ord:blocked"

    def notification_key(self, event_id: str, destination: str) -> str:
        return f"{self.prefix}n:{self._nid(event_id, destination)}"

    def seq_key(self, pair: str) -> str:
        return f"{self.prefix}ord:seq:{pair}"

    # -- the consumer side -----------------------------------------------------------------
    def add(self, pipe: redis.client.Pipeline, destination: str, recording: str,
            entry_id: str, event_id: str) -> str:
        """Queue one notification (idempotent: a re-dispatch adds the same member)."""
        pair = pair_key(destination, recording)
        key = self.queue_key(pair)
        pipe.zadd(key, {make_member(entry_id, event_id): 0})
        pipe.expire(key, self.ttl_s)
        return pair

    def frontier(self) -> str:
        """Padded id of the oldest entry not yet dispatched, or FRONTIER_OPEN."""
        try:
            summary = self.redis.xpending(self.stream, self.group)
        except redis.exceptions.ResponseError:
            return FRONTIER_OPEN
        oldest = summary.get("min") if summary else None
        if not oldest:
            return FRONTIER_OPEN
        return pad_entry_id(oldest.decode() if isinstance(oldest, bytes) else str(oldest))

    def release(self, pairs: Iterable[str], enqueue: Enqueue, frontier: str | None = None
                ) -> int:
        """Release the head of each pair when allowed; returns how many were enqueued."""
        frontier = self.frontier() if frontier is None else frontier
        released = 0
        now = f"{time.time():.3f}"
        for pair in pairs:
            head = self._release(keys=[self.queue_key(pair), self.inflight_key,
                                       self.blocked_key], args=[pair, frontier, now])
            if head:
                member = head.decode() if isinstance(head, bytes) else str(head)
                destination = pair.split("\x1f", 1)[0]
                event_id = member_event_id(member)
                self.sequence(self.notification_key(event_id, destination), pair)
                enqueue(event_id, destination)
                released += 1
        return released

    def sweep(self, enqueue: Enqueue) -> int:
        """Re-check pairs that waited for the frontier (run periodically by every worker)."""
        pairs = [_text(p) for p in self.redis.smembers(self.blocked_key)]
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
            member, _, stamp = _text(raw_value).rpartition("@")
            if stamp == "held" or not member:
                continue
            try:
                released_at = float(stamp)
            except ValueError:
                continue
            if now - released_at < stale_after_s:
                continue
            pair = _text(raw_pair)
            # refresh the stamp only if unchanged, so two sweepers do not both resend
            if self._restamp(keys=[self.inflight_key], args=[pair, _text(raw_value),
                                                             f"{member}@{now:.3f}"]):
                enqueue(member_event_id(member), pair.split("\x1f", 1)[0])
                resent += 1
        return resent

    # -- the deliverer side ----------------------------------------------------------------
    def sequence(self, notification_key: str, pair: str) -> int:
        return int(self._sequence(keys=[notification_key, self.seq_key(pair)],
                                  args=[self.ttl_s]))

    def complete(self, pair: str, member: str, *, hold: bool, enqueue: Enqueue) -> None:
        """The head ended: remove it and release the next (or hold it when dead + hold)."""
        done = self._complete(keys=[self.queue_key(pair), self.inflight_key],
                              args=[pair, member, "1" if hold else "0"])
        if int(done) == 1:
            self.release([pair], enqueue)

    def unhold(self, pair: str, member: str, enqueue: Enqueue) -> None:
        """A held dead head was purged: drop it and continue with the next."""
        current = _text(self.redis.hget(self.inflight_key, pair))
        if current == f"{member}@held":
            self.redis.zrem(self.queue_key(pair), member)
            self.redis.hdel(self.inflight_key, pair)
            self.release([pair], enqueue)

    def held_member(self, pair: str) -> str | None:
        current = _text(self.redis.hget(self.inflight_key, pair))
        if current.endswith("@held"):
            return current.rsplit("@", 1)[0]
        return None


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else value


def finish_ordered(ordering: Ordering, event_id: str, destination: str, *, hold_dead: bool,
                   enqueue: Enqueue) -> None:
    """After a task for an ordered destination: if its notification ended, release the next.

    Called for every run of such a task, duplicates included (idempotent: only the
    in-flight head of its pair can complete).
    """
    key = ordering.notification_key(event_id, destination)
    state, pair, member = ordering.redis.hmget(key, ["state", "ord_pair", "ord_member"])
    if not pair or not member:
        return
    ended = _text(state)
    if ended not in ("delivered", "dead"):
        return
    ordering.complete(_text(pair), _text(member), hold=hold_dead and ended == "dead",
                      enqueue=enqueue)
