"""The event stream consumer: read, match, fan out, acknowledge.

Each ``recnotify worker`` runs one consumer in the group ``{prefix}workers``.
An entry is acknowledged only after the event is stored and one delivery task
per matching destination is enqueued, so a consumer killed in between leaves
the entry pending; another consumer claims it after ``claim_idle_s``
(``XAUTOCLAIM``). Duplicate dispatches are harmless: notification ids are
derived from (event id, destination) and a delivered notification is skipped.
A notification to a destination whose circuit is open is parked (workers/state/parking.py)
in the same transaction instead of queued: no task runs for it until the circuit closes.

A malformed entry (no ``event`` field, bad JSON, an invalid event, anything at all
that fails while reading it) becomes a dead letter with its reason and is
acknowledged with its batch; the entries around it flow. One event id holds one
content: the first entry with an id stores the event as ``ev:<id>`` (an atomic
check-and-set for the whole batch); a later entry with the same id and other content
is dead-lettered (``id reused with different content``) and the first keeps its
content, while the same content again is a harmless duplicate.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
import redis.exceptions

from producer.errors import InvalidEvent
from producer.events import Event, parse_event_json
from workers.config.settings import Settings
from workers.config.telemetry import consume_spans
from workers.destinations.cache import ConfigCache
from workers.destinations.expiry import expires_at_s
from workers.destinations.model import Destination
from workers.errors import StoreError
from workers.http.request import notification_id
from workers.state.entries import entry_event_id, entry_time
from workers.state.notification import EnqueueMany
from workers.state.ordering import Ordering, group_bounds, make_member
from workers.state.parking import LoadEvent, ParkingLot
from workers.state.records import dead_record, event_record, ucid_of
from workers.state.scripts import Scripts
from workers.state.writes import NOTIFICATION_TTL_S

log = logging.getLogger("recnotify.consumer")

#: How old the consumer's view of the open circuits may be (workers/state/parking.py).
OPEN_CIRCUITS_MAX_AGE_S = 0.1
Entry = tuple[bytes, dict[bytes, bytes]]
QueueOn = Callable[[redis.client.Pipeline, Sequence[tuple[str, str]]], None]


def _stored_type(stored: bytes) -> str:
    try:
        value = json.loads(stored).get("type")
    except (ValueError, AttributeError):
        value = None
    return value if isinstance(value, str) else "event"


def _same_content(stored: bytes, event: Event, raw: bytes) -> bool:
    """Whether ``stored`` (what the event's id holds) is this entry's event again.

    Byte for byte, or as data (another spelling of the same JSON), or, for an entry
    that gave no ``occurred_at`` (it defaults to the entry's own time, which a re-send
    cannot repeat), the same in every other field.
    """
    if stored == event.to_json().encode("utf-8"):
        return True
    try:
        earlier = json.loads(stored)
        given = json.loads(raw)
    except ValueError:
        return False
    current = event.to_dict()
    if earlier == current:
        return True
    if not isinstance(earlier, dict) or "occurred_at" in given:
        return False
    earlier.pop("occurred_at", None)
    current.pop("occurred_at", None)
    return bool(earlier == current)


class StreamConsumer:
    def __init__(
        self,
        settings: Settings,
        client: redis.Redis,
        config: ConfigCache,
        enqueue: EnqueueMany,
        *,
        batch: int = 100,
        block_ms: int = 1000,
        ordering: Ordering | None = None,
        load_event: LoadEvent | None = None,
        known_events: Callable[[list[str]], dict[str, str]] | None = None,
    ) -> None:
        self.settings = settings
        self.keys = settings.keys
        self.redis = client
        self.config = config
        self.enqueue = enqueue
        #: the database's copies of event ids (Store.events_json), for ids Redis forgot
        self.known_events = known_events
        self.batch = batch
        self.block_ms = block_ms
        self.name = settings.node_name
        # shared with the delivery threads (one frontier cache per process) when given
        self.ordering = ordering or Ordering(client, settings.key_prefix, self.keys.events,
                                             self.keys.group)
        # an event Redis forgot (its dedupe window passed) is read from the database
        self.parking = ParkingLot(client, self.keys, load_event=load_event,
                                  dedupe_ttl_s=max(1, int(settings.dedupe_window_s)))
        self.scripts = Scripts.of(client)
        self.last_loop_s = 0.0
        self.dispatched = 0
        self._next_claim_s = 0.0
        self._next_trim_s = 0.0
        self._read_own_pending = True

    # -- setup -----------------------------------------------------------------------------
    def ensure_group(self) -> bool:
        """Create the group at the stream's start: events published earlier get delivered.

        True when the group had to be created (it did not exist).
        """
        try:
            self.redis.xgroup_create(self.keys.events, self.keys.group, id="0", mkstream=True)
            log.info("created consumer group %s on %s", self.keys.group, self.keys.events)
            return True
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
            return False

    # -- the loop --------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                if failures and self.ensure_group():
                    log.error("consumer group %s was gone after a Redis outage (restarted "
                              "without persistence?): recreated it, reading %s from its start; "
                              "events, queued deliveries and retries held only in Redis before "
                              "the loss are LOST", self.keys.group, self.keys.events)
                self.step()
                failures = 0
            except redis.exceptions.ResponseError as exc:
                failures += 1
                if "NOGROUP" in str(exc):
                    log.error(
                        "consumer group %s is gone (Redis restarted without persistence "
                        "or the stream was deleted): recreating it; events accepted before "
                        "the loss and not yet dispatched are LOST",
                        self.keys.group,
                    )
                    self._read_own_pending = True
                else:
                    log.error("stream read failed: %s", exc)
                stop.wait(min(5.0, 0.2 * 2**failures))
            except (
                redis.exceptions.ConnectionError,
                redis.exceptions.TimeoutError,
                redis.exceptions.BusyLoadingError,
            ) as exc:
                failures += 1
                log.error("Redis unavailable for the stream consumer (%s); retrying", exc)
                self._read_own_pending = True
                stop.wait(min(5.0, 0.2 * 2**failures))
            except Exception:
                failures += 1
                log.exception("stream consumer error; retrying")
                stop.wait(min(5.0, 0.2 * 2**failures))

    def step(self) -> int:
        """One read (own pending entries first after a restart), plus periodic claim/trim."""
        self.last_loop_s = time.time()
        now = time.monotonic()
        if now >= self._next_claim_s:
            self._next_claim_s = now + max(1.0, self.settings.claim_idle_s / 4)
            self.claim_stale()
        if now >= self._next_trim_s:
            self._next_trim_s = now + 60
            self.trim()
        start_id = "0" if self._read_own_pending else ">"
        response: Any = self.redis.xreadgroup(
            self.keys.group,
            self.name,
            {self.keys.events: start_id},
            count=self.batch,
            block=None if start_id == "0" else self.block_ms,
        )
        entries: list[Entry] = response[0][1] if response else []
        if start_id == "0" and not entries:
            self._read_own_pending = False
        if entries:
            self.process(entries)
        return len(entries)

    def claim_stale(self) -> int:
        """Take over entries a dead consumer read but never acknowledged."""
        claimed = 0
        cursor = "0-0"
        while True:
            result = self.redis.xautoclaim(
                self.keys.events,
                self.keys.group,
                self.name,
                min_idle_time=int(self.settings.claim_idle_s * 1000),
                start_id=cursor,
                count=self.batch,
            )
            cursor = result[0].decode() if isinstance(result[0], bytes) else str(result[0])
            entries = [e for e in result[1] if e and e[1] is not None]
            if entries:
                log.warning(
                    "claimed %d stream entries left pending by a dead consumer", len(entries)
                )
                self.process(entries)
                claimed += len(entries)
            if cursor == "0-0" or not result[1]:
                return claimed

    # -- dispatch --------------------------------------------------------------------------
    def process(self, entries: Sequence[Entry]) -> None:
        """Fan out each entry, then acknowledge them all.

        The batch's writes, its tasks (when the enqueue can queue them on a pipeline) and
        the XACK go in one MULTI/EXEC, the ack last: a lost connection or a refused write
        (e.g. Redis out of memory: EXECABORT) applies nothing and acknowledges nothing,
        and the entries are read again (delivery is idempotent per notification).
        """
        stream = self.keys.events
        tasks: list[tuple[str, str]] = []
        ordered_pairs: set[str] = set()
        # their notifications wait parked (read at most every 0.1 s)
        open_circuits = self.parking.open_circuits(max_age_s=OPEN_CIRCUITS_MAX_AGE_S)
        now = time.time()
        parked = 0
        pipe = self.redis.pipeline(transaction=True)
        # An event's Redis copy is kept long while only Redis has it: its record goes with
        # the batch to the flusher, which shortens the copy to the dedupe window once the
        # database has the event (indexed by UCID there)
        retention_s = NOTIFICATION_TTL_S
        retained: list[str] = []
        prepared: list[tuple[str, bytes, Event, list[Destination]]] = []
        for raw_id, fields in entries:
            entry_id = raw_id.decode()
            ready = self._prepare(entry_id, fields, pipe)
            if ready is not None:
                prepared.append((entry_id, fields[b"event"], *ready))
        traced = consume_spans(prepared, stream)  # tracing off: a no-op
        claimed = self._claim_ids([p[2] for p in prepared], retention_s)
        for (entry_id, raw, event, destinations), stored in zip(prepared, claimed, strict=True):
            if stored is not None and not _same_content(stored, event, raw):
                self._dead_letter(
                    pipe, entry_id, raw, event.id,
                    f"id reused with different content: event {event.id} is already "
                    f"stored with other content (a {_stored_type(stored)} from an earlier "
                    "entry), which it keeps; give this event a new id",
                )
                continue
            if stored is not None:  # the same event again: a harmless duplicate
                pipe.expire(self.keys.event(event.id), retention_s)
            # for the database (a duplicate's too: a batch read again after a failed MULTI
            # finds its ids claimed; the database keeps an id's first row)
            retained.append(event_record(
                event_id=event.id, entry_id=entry_id, type=event.type, ucid=ucid_of(event),
                event_json=event.to_json(), stored_at=now))
            recording = event.ordering_key()
            for dest in destinations:
                if dest.ordered and recording is not None:
                    ordered_pairs.add(self._queue_ordered(pipe, dest.name, recording, entry_id,
                                                          event.id))
                elif dest.name in open_circuits and dest.enabled:
                    self.parking.park(pipe, event.id, dest, now, expires_at=expires_at_s(
                        dest.expire_after_s, event.type, occurred_at=event.occurred_at,
                        first_at_s=now))
                    parked += 1
                else:
                    tasks.append((event.id, dest.name))
            log.info(
                "event %s (%s) from entry %s: %d notification(s)",
                event.id,
                event.type,
                entry_id,
                len(destinations),
            )
        if retained:
            pipe.rpush(self.keys.records, *retained)
        dispatched = self.keys.metric("dispatched")
        pipe.hincrby(dispatched, "events|total", len(entries))
        pipe.hincrby(dispatched, "notifications|total", len(tasks) + parked)
        queue_on: QueueOn | None = getattr(self.enqueue, "add_to", None)
        if tasks and queue_on is not None:
            queue_on(pipe, tasks)
        elif tasks:
            pipe.execute()
            self.enqueue(tasks)
            pipe = self.redis.pipeline(transaction=False)
        pipe.xack(stream, self.keys.group, *[raw_id for raw_id, _ in entries])
        pipe.execute()
        traced.end()
        self.dispatched += len(tasks) + parked
        if ordered_pairs:
            # the heads just queued are newer than any cached frontier: read it fresh
            self.ordering.release(sorted(ordered_pairs), self.enqueue,
                                  self.ordering.frontier())

    def _queue_ordered(self, pipe: redis.client.Pipeline, destination: str, recording: str,
                       entry_id: str, event_id: str) -> str:
        """An ordered destination's notification waits in its recording's queue."""
        nid = notification_id(event_id, destination)
        pair = self.ordering.add(pipe, destination, recording, entry_id, event_id, nid)
        nkey = self.keys.notification(nid)
        pipe.hset(nkey, mapping={"ord_pair": pair,
                                 "ord_member": make_member(entry_id, event_id, nid)})
        pipe.expire(nkey, self.ordering.ttl_s)
        self.dispatched += 1
        return pair

    def _prepare(self, entry_id: str, fields: dict[bytes, bytes], pipe: redis.client.Pipeline
                 ) -> tuple[Event, list[Destination]] | None:
        """The entry's event and its destinations; None when the entry was dead-lettered.

        Whatever goes wrong with one entry (an invalid event, or any other exception
        while reading or matching it) dead-letters that entry alone, with the reason:
        the entries around it are dispatched as usual (SPEC 6).
        """
        raw = fields.get(b"event")
        try:
            if raw is None:
                names = ", ".join(sorted(k.decode("utf-8", "replace") for k in fields))
                raise InvalidEvent(
                    "event", names, f"stream entry has no 'event' field (fields: {names})"
                )
            event = parse_event_json(
                raw,
                default_id=entry_event_id(self.keys.events, entry_id),
                default_occurred_at=entry_time(entry_id),
            )
            return event, self.config.index.match(event)
        except InvalidEvent as exc:
            reason = f"invalid event: {exc}"
        except Exception as exc:  # one entry must never block the others
            reason = f"invalid event: cannot be read ({type(exc).__name__}: {str(exc)[:200]})"
        self._dead_letter(pipe, entry_id, raw, entry_id, reason)
        return None

    def _dead_letter(self, pipe: redis.client.Pipeline, entry_id: str, raw: bytes | None,
                     event_id: str, reason: str) -> None:
        """A dead letter for one refused stream entry (acknowledged with its batch)."""
        log.error("stream entry %s refused and dead-lettered: %s", entry_id, reason)
        pipe.rpush(
            self.keys.records,
            dead_record(
                notification_id=f"entry:{entry_id}",
                event_id=event_id,
                destination="",
                event_json=json.dumps((raw or b"").decode("utf-8", "replace")[:65536]),
                attempts_json="[]",
                reason=reason,
                created_at=time.time(),
            ),
        )

    def _claim_ids(self, events: Sequence[Event], retention_s: int) -> list[bytes | None]:
        """Store each event as ``ev:<id>`` unless that id is stored already (one atomic
        script call for the batch): None for a stored event, else what the id holds."""
        if not events:
            return []
        replies: list[Any] = self.scripts.run(
            "event_claim_ids", [self.keys.event(e.id) for e in events],
            [retention_s, *(e.to_json() for e in events)])
        claimed = [None if reply == 0 else bytes(reply) for reply in replies]
        # Redis remembers an id for the dedupe window only; the database for the event
        # retention: an id it holds keeps that content (SPEC 6), and its Redis copy too
        fresh = sorted({e.id for e, reply in zip(events, claimed, strict=True)
                        if reply is None})
        known = self._known_events(fresh) if fresh else {}
        if known:
            window_s = max(1, int(self.settings.dedupe_window_s))
            restore = self.redis.pipeline(transaction=False)
            for event_id, stored in known.items():
                restore.set(self.keys.event(event_id), stored, ex=window_s)
            restore.execute()
        return [known[e.id].encode() if e.id in known else reply
                for e, reply in zip(events, claimed, strict=True)]

    def _known_events(self, ids: list[str]) -> dict[str, str]:
        """The stored JSON of those of ``ids`` the database keeps (none when it is down:
        then only Redis' memory of ids applies, and a warning says so)."""
        if self.known_events is None:
            return {}
        try:
            return self.known_events(ids)
        except StoreError as exc:
            log.warning("the database is unavailable, so event ids older than the dedupe "
                        "window are not checked for reuse now: %s", exc)
            return {}

    # -- retention -------------------------------------------------------------------------
    def trim(self) -> None:
        """Drop acknowledged entries older than the retention.

        Never a pending entry, and never one the group has not read yet: the cut is
        the oldest of (now - retention, the oldest pending entry, the group's
        last-delivered entry).
        """
        cutoff_ms = int((time.time() - self.settings.stream_retention_s) * 1000)
        candidates = [f"{max(cutoff_ms, 0)}-0"]
        bounds = group_bounds(self.redis, self.keys.events, self.keys.group)
        if bounds is None:
            return
        oldest, last_read = bounds
        candidates += [entry for entry in (oldest, last_read) if entry]
        min_id = min(candidates, key=_id_tuple)
        self.redis.xtrim(self.keys.events, minid=min_id, approximate=True)


def _id_tuple(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
