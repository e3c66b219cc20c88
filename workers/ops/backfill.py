"""Backfill: send retained events to one destination again (SPEC 7 ``recnotify replay``).

The events come from the database (its ``events`` table, which keeps them for
``RECNOTIFY_EVENT_RETENTION_DAYS``; the records still buffered in Redis are flushed first),
in stream order. Each one the :class:`~workers.ops.selection.Selection`
wants, and that routing sends to the destination *now*, becomes that destination's
notification again, under its usual id (``msg_<uuid5(event, destination)>``), so a
receiver that deduplicates on ``webhook-id`` sees the same id it saw before, if any:

- a notification that is delivered or dead (or was never made) gets fresh attempts;
- one still queued, in flight, waiting or parked is left alone (it is being delivered);
- an ordered destination gets each recording's events through its ordering queue, in
  stream order, exactly as the consumer queues them.

The run is paced: at most ``rate_per_s`` notifications a second (the destination's
``rate_limit_per_s``, else 200/s), and at most ``window`` of them unfinished at a time
(twice its ``max_in_flight``, else 200), so live traffic to other destinations keeps
its share of the workers. A checkpoint (``{p}backfill:<job>``) records the cursor and
counts after every batch: the same selection run again resumes after the cursor; one
that finished starts over. One process runs a job at a time (``{p}backfill-lock:<job>``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from producer.errors import InvalidEvent
from producer.events import Event, load_stored_event, parse_event_json
from workers.config.settings import Settings
from workers.destinations.model import Destination
from workers.destinations.routing import RoutingIndex
from workers.errors import ConfigError
from workers.http.request import notification_id
from workers.ops.selection import Selection
from workers.state.codec import as_text
from workers.state.entries import entry_event_id, entry_time
from workers.state.notification import EnqueueMany
from workers.state.ordering import Ordering, make_member, pair_key
from workers.state.records import Flusher
from workers.state.schedule import schedule_member
from workers.state.scripts import Scripts
from workers.state.writes import queue_fresh_attempts
from workers.store.database import Store

__all__ = ["Backfill", "BackfillCounts", "read_job"]

log = logging.getLogger("recnotify.backfill")

DEFAULT_RATE_PER_S = 200.0
DEFAULT_WINDOW = 200
BATCH = 200
JOB_TTL_S = 7 * 86_400
LOCK_TTL_S = 30
LOCK_REFRESH_S = 5.0
#: How long the window may stay full with nothing finishing before the run stops.
STALL_S = 600.0
FINISHED = (b"delivered", b"dead")
#: How long a run waits for the buffered records (the newest events) to reach the database.
DRAIN_S = 10.0


@dataclass(slots=True)
class BackfillCounts:
    """What a backfill looked at and what it sent; ``per_type`` counts notifications."""

    scanned: int = 0
    events: int = 0
    notifications: int = 0
    in_progress: int = 0
    unreadable: int = 0
    held: int = 0
    per_type: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {"scanned": self.scanned, "events": self.events,
                "notifications": self.notifications, "in_progress": self.in_progress,
                "unreadable": self.unreadable, "held": self.held,
                "per_type": dict(sorted(self.per_type.items()))}


def read_job(client: redis.Redis, settings: Settings, job_id: str) -> dict[str, Any] | None:
    """A backfill's checkpoint as plain values (None when there is no such job)."""
    raw = client.hgetall(settings.keys.backfill(job_id))
    if not raw:
        return None
    job = {as_text(k): as_text(v) for k, v in raw.items()}
    counts = json.loads(job.pop("counts", "{}") or "{}")
    if job.get("state") == "running" and not client.exists(settings.keys.backfill_lock(job_id)):
        job["state"] = "interrupted"  # its runner died: the same selection resumes it
    return {"id": job_id, "state": job.get("state", ""), "cursor": job.get("cursor", ""),
            "selection": json.loads(job.get("selection", "{}") or "{}"),
            "started_at": float(job.get("started_at") or 0),
            "updated_at": float(job.get("updated_at") or 0),
            "error": job.get("error", ""), **counts}


class Backfill:
    """One backfill job: :meth:`plan` counts it, :meth:`run` sends it."""

    def __init__(self, settings: Settings, client: redis.Redis, destination: Destination,
                 selection: Selection, enqueue: EnqueueMany, *, store: Store,
                 rate_per_s: float | None = None, window: int | None = None,
                 owns: Callable[[Event], bool] | None = None) -> None:
        if selection.destination != destination.name:
            raise ValueError("the selection names another destination")
        if not destination.enabled:
            raise ConfigError(f"destination {destination.name!r} is disabled: enable it "
                              f"first (`recnotify destinations enable {destination.name}`)")
        self.settings = settings
        self.keys = settings.keys
        self.client = client
        self.store = store
        #: with cells: the events this cell owns (the others are each their own cell's job)
        self.owns = owns
        self.destination = destination
        self.selection = selection
        self.enqueue = enqueue
        self.index = RoutingIndex.build([destination])
        self.rate_per_s = rate_per_s or destination.rate_limit_per_s or DEFAULT_RATE_PER_S
        self.window = window or (2 * destination.max_in_flight if destination.max_in_flight
                                 else DEFAULT_WINDOW)
        self.ordering = Ordering(client, settings.key_prefix, self.keys.events, self.keys.group)
        self.job_id = selection.job_id
        # a batch never holds more than half the window: room is made before it is read
        self.batch = max(1, min(BATCH, self.window // 2))
        self._outstanding: deque[str] = deque()
        self._locked_at = 0.0
        self.scripts = Scripts.of(client)
        self._holder = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        #: the last page's position (``events_after``'s cursor)
        self.cursor = ""
        self._drained = False

    # -- reading the retained events ------------------------------------------------------
    def _entries(self, after: str) -> list[tuple[str, bytes | None]]:
        """The next page after the cursor ``after`` ('' : the start); :attr:`cursor` is then
        the page's last position (its entry id and row id: entries of two cells may share
        an entry id)."""
        if not after or not self._drained:
            # the events consumed a moment ago may still wait in Redis' buffer
            self._drained = True
            if not Flusher.of(self.client, self.keys, self.store,
                              window_s=self.settings.dedupe_window_s).drain(timeout_s=DRAIN_S):
                log.warning("backfill %s: the newest buffered events did not reach the "
                            "database within %.0f s; they may be left out (run it again "
                            "later for them)", self.job_id, DRAIN_S)
        got = self.store.events_after(after, self.selection.last_entry,
                                      first=self.selection.first_entry, limit=self.batch)
        if got:
            self.cursor = got[-1][2]
        return [(entry_id, raw.encode()) for entry_id, raw, _ in got]

    def _event(self, entry_id: str, raw: bytes | None) -> Event | None:
        if raw is None:
            return None
        try:
            return parse_event_json(raw, default_id=entry_event_id(self.keys.events, entry_id),
                                    default_occurred_at=entry_time(entry_id))
        except InvalidEvent:  # dead-lettered when it was consumed; nothing to send
            return None

    def _wanted(self, event: Event | None) -> bool:
        return (event is not None and self.selection.wants(event)
                and (self.owns is None or self.owns(event)) and bool(self.index.match(event)))

    def total_entries(self) -> int:
        """How many events the run may look at (the retained events: a bound)."""
        return self.store.count_events()

    # -- dry run ----------------------------------------------------------------------------
    def plan(self) -> BackfillCounts:
        """What a run would send, per event type; sends nothing."""
        counts = BackfillCounts()
        cursor = ""
        while batch := self._entries(cursor):
            self._classify(batch, counts)
            cursor = self.cursor
        return counts

    def _classify(self, batch: list[tuple[str, bytes | None]], counts: BackfillCounts
                  ) -> list[tuple[str, Event, str]]:
        """The (entry id, event, notification id) of ``batch`` to send, counted in
        ``counts`` with what is left alone (see :meth:`_look`); the dry run and the run
        both decide here."""
        counts.scanned += len(batch)
        events = [(entry_id, self._event(entry_id, raw)) for entry_id, raw in batch]
        counts.unreadable += sum(event is None for _, event in events)
        wanted = [(entry_id, event, notification_id(event.id, self.destination.name))
                  for entry_id, event in events if event is not None and self._wanted(event)]
        looked = self._look([(event, nid) for _, event, nid in wanted])
        send: list[tuple[str, Event, str]] = []
        for entry_id, event, nid in wanted:
            verdict = looked.get(nid, "busy")
            if verdict == "busy":  # queued, in flight, waiting, parked, or sent already
                counts.in_progress += 1
            elif verdict == "other content":  # the consumer dead-lettered this entry
                counts.unreadable += 1
            elif verdict == "held":
                counts.held += 1
            else:
                looked[nid] = "busy"  # the same event twice in the stream: once
                send.append((entry_id, event, nid))
                counts.events += 1
                counts.notifications += 1
                counts.per_type[event.type] += 1
        return send

    # -- the run ----------------------------------------------------------------------------
    def acquire(self) -> None:
        """Take the job's lock (one runner per job), or say who holds it."""
        lock = self.keys.backfill_lock(self.job_id)
        if not self.client.set(lock, self._holder, nx=True, ex=LOCK_TTL_S):
            holder = as_text(self.client.get(lock))
            raise ConfigError(f"backfill {self.job_id} is already running ({holder}): wait for "
                              "it, or stop it first; it resumes where it stopped")
        self._locked_at = time.monotonic()

    def run(self, *, progress: Callable[[int], None] | None = None,
            stop: threading.Event | None = None, locked: bool = False) -> dict[str, Any]:
        """Send the selection; returns the final checkpoint. Resumes an unfinished job.
        ``locked``: the caller took the lock already (:meth:`acquire`)."""
        key = self.keys.backfill(self.job_id)
        if not locked:
            self.acquire()
        try:
            return self._run(key, progress, stop or threading.Event())
        except Exception as exc:
            self.client.hset(key, mapping={"state": "failed", "error": str(exc)[:500],
                                           "updated_at": time.time()})
            raise
        finally:
            self.scripts.run("lock_release", [self.keys.backfill_lock(self.job_id)],
                             [self._holder])

    def _keep_lock(self) -> None:
        """Refresh the lock (every few seconds, waits included); stop if another took it."""
        if time.monotonic() - self._locked_at < LOCK_REFRESH_S:
            return
        lock = self.keys.backfill_lock(self.job_id)
        if as_text(self.client.get(lock)) != self._holder:
            raise ConfigError(f"backfill {self.job_id} lost its lock to another runner; it "
                              "stopped here (run the same command again to resume)")
        self.client.expire(lock, LOCK_TTL_S)
        self._locked_at = time.monotonic()

    def _wait(self, seconds: float, stop: threading.Event) -> None:
        """Wait (interruptibly), keeping the lock."""
        deadline = time.monotonic() + seconds
        while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            stop.wait(min(left, LOCK_REFRESH_S))
            self._keep_lock()

    def _run(self, key: str, progress: Callable[[int], None] | None,
             stop: threading.Event) -> dict[str, Any]:
        job = read_job(self.client, self.settings, self.job_id)
        counts = BackfillCounts()
        cursor = ""
        if job and job["state"] in ("running", "interrupted", "failed") and job["selection"]:
            cursor = job["cursor"]
            # the window it resolved when it started ("2h" then, not now)
            self.selection = self.selection.window_of(Selection(**job["selection"]))
            for name in ("scanned", "events", "notifications", "in_progress", "unreadable",
                         "held"):
                setattr(counts, name, int(job.get(name, 0)))
            counts.per_type.update(job.get("per_type", {}))
            log.info("backfill %s resumes after entry %s", self.job_id, cursor or "(start)")
        self.client.hset(key, mapping={
            "selection": self.selection.to_json(), "state": "running", "cursor": cursor,
            "started_at": (job or {}).get("started_at") or time.time(),
            "updated_at": time.time(), "error": "", "counts": json.dumps(counts.as_dict())})
        self.client.expire(key, JOB_TTL_S)
        started = time.monotonic()
        sent_here = 0
        while not stop.is_set():
            self._make_room(stop)
            batch = self._entries(cursor) if not stop.is_set() else []
            if not batch:
                break
            before = len(self._outstanding)
            pairs: list[tuple[str, str]] = []
            ordered: set[str] = set()
            pipe = self.client.pipeline(transaction=True)
            for entry_id, event, nid in self._classify(batch, counts):
                self._resend(pipe, entry_id, event, nid, pairs, ordered)
            resent = len(self._outstanding) - before
            self._pace(sent_here + resent, started, stop)
            pipe.execute()
            if pairs:
                self.enqueue(pairs)
            if ordered:
                self.ordering.release(sorted(ordered), self.enqueue, self.ordering.frontier())
            # the cursor moves only once the batch is enqueued: a crash before this line
            # scans the batch again (its notifications then look busy or are sent again,
            # under the same ids), never skips it
            cursor = self.cursor
            self.client.hset(key, mapping={"cursor": cursor, "updated_at": time.time(),
                                           "counts": json.dumps(counts.as_dict())})
            self._keep_lock()
            sent_here += resent
            if progress:
                progress(len(batch))
        state = "interrupted" if stop.is_set() else "done"
        self.client.hset(key, mapping={"state": state, "updated_at": time.time(),
                                       "counts": json.dumps(counts.as_dict())})
        log.info("backfill %s %s: %s", self.job_id, state, counts.as_dict())
        return read_job(self.client, self.settings, self.job_id) or {}

    def _look(self, items: list[tuple[Event, str]]) -> dict[str, str]:
        """Per notification id: ``send``, ``busy`` (not finished: a lock, a watchdog entry,
        a non-terminal state), ``held`` (its recording waits on a held dead letter) or
        ``other content`` (the stored event under this id differs). One round trip."""
        if not items:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for event, nid in items:
            pipe.hget(self.keys.notification(nid), "state")
            pipe.exists(self.keys.lock(nid))
            pipe.zscore(self.keys.watchdog, schedule_member(event.id, self.destination.name))
            pipe.get(self.keys.event(event.id))
            recording = event.ordering_key()
            if self.destination.ordered and recording is not None:
                pipe.hget(self.keys.ord_inflight,
                          pair_key(self.destination.name, recording))
            else:
                pipe.echo(b"")
        replies = pipe.execute()
        verdicts: dict[str, str] = {}
        for n, (event, nid) in enumerate(items):
            state, locked, watched, stored, inflight = replies[5 * n: 5 * n + 5]
            if stored is not None and load_stored_event(stored).to_json() != event.to_json():
                verdicts[nid] = "other content"
            # unfinished: locked or started; a finished one's lock is one its delivery
            # left to expire
            elif watched is not None or (state not in FINISHED
                                          and (locked or state is not None)):
                verdicts[nid] = "busy"
            elif inflight and as_text(inflight).endswith("@held"):
                verdicts[nid] = "held"
            else:
                verdicts[nid] = "send"
        return verdicts

    def _resend(self, pipe: redis.client.Pipeline, entry_id: str, event: Event, nid: str,
                pairs: list[tuple[str, str]], ordered: set[str]) -> None:
        """Queue on ``pipe`` what makes this notification new again, then its dispatch."""
        # a copy for the dedupe window (a delivery after it reads the database's)
        window_s = max(1, int(self.settings.dedupe_window_s))
        pipe.set(self.keys.event(event.id), event.to_json(), ex=window_s, nx=True)
        queue_fresh_attempts(pipe, self.keys, nid)
        pipe.delete(self.keys.lock(nid))  # left by its delivery to expire: it is done
        nkey = self.keys.notification(nid)
        self._outstanding.append(nid)
        recording = event.ordering_key()
        if self.destination.ordered and recording is not None:
            pair = self.ordering.add(pipe, self.destination.name, recording, entry_id, event.id,
                                     nid)
            pipe.hset(nkey, mapping={"ord_pair": pair,
                                     "ord_member": make_member(entry_id, event.id, nid)})
            pipe.expire(nkey, self.ordering.ttl_s)
            ordered.add(pair)
        else:
            pairs.append((event.id, self.destination.name))

    def _pace(self, sent: int, started: float, stop: threading.Event) -> None:
        """Wait until ``sent`` notifications since ``started`` keep under the rate."""
        ahead_s = sent / self.rate_per_s - (time.monotonic() - started)
        if ahead_s > 0:
            self._wait(ahead_s, stop)

    def _make_room(self, stop: threading.Event) -> None:
        """Wait until one more batch keeps the unfinished notifications within the window;
        fail when none of them finishes for ``STALL_S`` (a receiver down for that long:
        stop here, resume later)."""
        last_progress = time.monotonic()
        while len(self._outstanding) > self.window - self.batch and not stop.is_set():
            before = len(self._outstanding)
            self._settle()
            if len(self._outstanding) < before:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > STALL_S:
                raise ConfigError(
                    f"backfill {self.job_id}: none of {len(self._outstanding)} notifications "
                    f"to {self.destination.name} finished in {STALL_S:g} s; it stopped here "
                    "(see `recnotify trace`; run the same command again to resume)")
            if len(self._outstanding) > self.window - self.batch:
                self._wait(0.2, stop)

    def _settle(self) -> None:
        """Forget the outstanding notifications that have finished."""
        nids = list(self._outstanding)
        if not nids:
            return
        pipe = self.client.pipeline(transaction=False)
        for nid in nids:
            pipe.hget(self.keys.notification(nid), "state")
        states = dict(zip(nids, pipe.execute(), strict=True))
        self._outstanding = deque(n for n in nids if states.get(n) not in FINISHED)
