"""Retained events in the database: what trace, dead-letter replay and backfill read.

Redis keeps an event only while its notifications are in flight and for the dedupe
window (``RECNOTIFY_DEDUPE_WINDOW_S``); the consumer buffers a copy of each new event
with the attempt records and the flusher writes it here (workers/state/records.py). An
event id is stored once: a second copy of the same id keeps the first (the consumer
refuses an id reused with other content while Redis remembers the id).

Rows go in and come out as plain dicts. Retention
(:func:`workers.store.records.purge_in_batches`) deletes in bounded batches, so a purge of
a large table never holds a long write lock.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from workers.store.records import db_errors, purge_in_batches
from workers.store.schema import events

__all__ = ["EVENT_FIELDS", "MAX_UCID_CHARS", "EventsMixin", "entry_numbers"]

EVENT_FIELDS = ("event_id", "entry_id", "type", "ucid", "stored_at", "event_json")
#: the UCID index holds this many characters of a UCID (lookups cut theirs the same way)
MAX_UCID_CHARS = 200


def entry_numbers(entry_id: str) -> tuple[int, int]:
    """A stream entry id's two numbers: ``"1700000000000-3"`` -> ``(1700000000000, 3)``."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _event_row(row: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: row.get(k) for k in EVENT_FIELDS}
    out["entry_ms"], out["entry_seq"] = entry_numbers(str(out["entry_id"]))
    ucid = out["ucid"]
    out["ucid"] = str(ucid)[:MAX_UCID_CHARS] if ucid not in (None, "") else None
    return out


class EventsMixin:
    """Retained events (needs ``_engine``/``_writer``/``_clock``, as the Store has)."""

    _engine: Engine
    _writer: Engine
    _clock: Callable[[], float]

    def add_events(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Store events (keys of ``EVENT_FIELDS``); an id stored already keeps its row."""
        if not rows:
            return
        values = list({row["event_id"]: _event_row(row) for row in reversed(rows)}.values())
        with db_errors("storing events"), self._writer.begin() as conn:
            self._insert_new(conn, values)

    @staticmethod
    def _insert_new(conn: Connection, values: list[dict[str, Any]]) -> None:
        name = conn.dialect.name
        if name in ("postgresql", "sqlite"):
            dialect_insert = postgresql.insert if name == "postgresql" else sqlite.insert
            conn.execute(dialect_insert(events).on_conflict_do_nothing(
                index_elements=["event_id"]), values)
            return
        known = set(conn.execute(select(events.c.event_id).where(
            events.c.event_id.in_([v["event_id"] for v in values]))).scalars())
        fresh = [v for v in values if v["event_id"] not in known]
        if fresh:
            conn.execute(insert(events), fresh)

    def get_event_json(self, event_id: str) -> str | None:
        """The stored JSON of one event, or None."""
        query = select(events.c.event_json).where(events.c.event_id == event_id)
        with db_errors("reading an event"), self._engine.connect() as conn:
            return conn.execute(query).scalar_one_or_none()

    def events_json(self, event_ids: Sequence[str]) -> dict[str, str]:
        """The stored JSON of those of ``event_ids`` the database keeps (one query)."""
        if not event_ids:
            return {}
        query = select(events.c.event_id, events.c.event_json).where(
            events.c.event_id.in_(list(event_ids)))
        with db_errors("reading events"), self._engine.connect() as conn:
            return {str(r[0]): str(r[1]) for r in conn.execute(query)}

    def event_ids_for_ucid(self, ucid: str, *, limit: int = 10_000) -> list[str]:
        """The ids of the events of one call (its UCID), oldest entry first. The index
        holds a UCID's first ``MAX_UCID_CHARS``; a longer one is compared whole."""
        cut = ucid[:MAX_UCID_CHARS]
        query = (select(events.c.event_id, events.c.event_json).where(events.c.ucid == cut)
                 .order_by(events.c.entry_ms, events.c.entry_seq, events.c.id).limit(limit))
        with db_errors("finding a call's events"), self._engine.connect() as conn:
            rows = conn.execute(query).all()
        if len(ucid) <= MAX_UCID_CHARS:
            return [str(r[0]) for r in rows]
        return [str(r[0]) for r in rows
                if str(json.loads(r[1]).get("params", {}).get("UCID")) == ucid]

    def events_after(self, after: str, last: str, *, first: str = "-", limit: int = 200
                     ) -> list[tuple[str, str, str]]:
        """``(entry id, event JSON, cursor)`` in stream order, from the position after the
        cursor ``after`` ('': from the entry ``first``, '-' the start) up to the entry
        ``last`` ('+' the end), at most ``limit``. A cursor is ``<entry id>#<row id>``: two
        cells' streams may give two events one entry id, and the row id orders them (a
        bare entry id, from an older checkpoint, resumes after every row of that entry)."""
        key = tuple_(events.c.entry_ms, events.c.entry_seq, events.c.id)
        query = select(events.c.entry_id, events.c.event_json, events.c.id)
        if after:
            entry, _, row_id = after.partition("#")
            ms, seq = entry_numbers(entry)
            query = query.where(key > tuple_(ms, seq, int(row_id) if row_id else 2**62))
        elif first not in ("-", ""):
            query = query.where(tuple_(events.c.entry_ms, events.c.entry_seq)
                                >= tuple_(*entry_numbers(first)))
        if last not in ("+", ""):
            query = query.where(tuple_(events.c.entry_ms, events.c.entry_seq)
                                <= tuple_(*entry_numbers(last)))
        query = query.order_by(events.c.entry_ms, events.c.entry_seq, events.c.id).limit(limit)
        with db_errors("reading retained events"), self._engine.connect() as conn:
            return [(str(r[0]), str(r[1]), f"{r[0]}#{r[2]}") for r in conn.execute(query)]

    def count_events(self) -> int:
        """How many events the database retains (a bound for a backfill's progress)."""
        with db_errors("counting events"), self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(events)).scalar_one())

    def purge_events_older_than(self, days: float) -> int:
        """Delete events stored more than ``days`` ago (bounded batches); how many."""
        cutoff = self._clock() - days * 86400.0
        with db_errors("purging old events"):
            return purge_in_batches(self._writer, events, events.c.stored_at, cutoff)

