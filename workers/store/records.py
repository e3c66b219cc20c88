"""Delivery records in the configuration database: attempts, dead letters, audit log.

Mixed into :class:`workers.store.database.Store`; rows go in and come out as plain dicts.
Retention (SPEC 7): :meth:`RecordsMixin.purge_records_older_than`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Column, Connection, Engine, Table, delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from workers.errors import StoreError
from workers.store.schema import attempts, audit_log, dead_letters

__all__ = ["ATTEMPT_FIELDS", "DEAD_LETTER_FIELDS", "PURGE_BATCH", "RecordsMixin", "db_errors",
           "purge_in_batches"]

#: rows one retention statement deletes at most (each batch its own short transaction)
PURGE_BATCH = 5_000

ATTEMPT_FIELDS = (
    "notification_id",
    "event_id",
    "destination",
    "attempt",
    "at",
    "status",
    "error",
    "latency_ms",
    "outcome",
    "response",
)
DEAD_LETTER_FIELDS = (
    "notification_id",
    "event_id",
    "destination",
    "event_json",
    "attempts_json",
    "reason",
    "created_at",
)


@contextmanager
def db_errors(what: str) -> Iterator[None]:
    """Turn database failures into StoreError (no SQL parameters, hence no secrets)."""
    try:
        yield
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc
        first_line = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise StoreError(f"{what} failed: {type(cause).__name__}: {first_line}") from None


def purge_in_batches(writer: Engine, table: Table, at: Column[float], cutoff: float, *,
                     batch: int = PURGE_BATCH) -> int:
    """Delete the rows of ``table`` whose time ``at`` is before ``cutoff``, ``batch`` at a
    time (each a transaction of its own, found through ``at``'s index, deleted by primary
    key); returns how many went."""
    gone = 0
    while True:
        with writer.begin() as conn:
            ids = [r[0] for r in conn.execute(
                select(table.c.id).where(at < cutoff).order_by(at).limit(batch))]
            if ids:
                conn.execute(delete(table).where(table.c.id.in_(ids)))
        gone += len(ids)
        if len(ids) < batch:
            return gone


def _dead_letter_row(row: Mapping[str, Any], now_s: float) -> dict[str, Any]:
    out = {k: row.get(k) for k in DEAD_LETTER_FIELDS}
    if out["event_json"] is None:
        out["event_json"] = json.dumps(row.get("event", {}), sort_keys=True)
    if out["attempts_json"] is None:
        out["attempts_json"] = json.dumps(list(row.get("attempts", [])))
    if out["created_at"] is None:
        out["created_at"] = now_s
    out["reason"] = out["reason"] or ""
    return out


def _dead_letter_out(row: Mapping[Any, Any]) -> dict[str, Any]:
    out = dict(row)
    out["event"] = json.loads(out["event_json"])
    out["attempts"] = json.loads(out["attempts_json"])
    return out


class RecordsMixin:
    """Attempt records, dead letters and the audit log (needs ``_engine``/``_writer``)."""

    _engine: Engine
    _writer: Engine  # transactions that write (SQLite: BEGIN IMMEDIATE)
    _clock: Callable[[], float]

    def add_attempts(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Store attempt records (keys of ``ATTEMPT_FIELDS``; status/error optional)."""
        if not rows:
            return
        values = [{k: row.get(k) for k in ATTEMPT_FIELDS} for row in rows]
        for value in values:
            value["latency_ms"] = value["latency_ms"] or 0.0
        with db_errors("storing attempt records"), self._writer.begin() as conn:
            conn.execute(insert(attempts), values)

    def list_attempts(
        self,
        *,
        destination: str | None = None,
        notification_id: str | None = None,
        event_id: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Attempt records, newest first."""
        query = select(attempts).order_by(attempts.c.at.desc(), attempts.c.id.desc())
        for column, value in (
            (attempts.c.destination, destination),
            (attempts.c.notification_id, notification_id),
            (attempts.c.event_id, event_id),
        ):
            if value is not None:
                query = query.where(column == value)
        with db_errors("listing attempts"), self._engine.connect() as conn:
            rows = conn.execute(query.limit(limit).offset(offset)).mappings().all()
        return [dict(r) for r in rows]

    def add_dead_letters(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Store dead letters; one per notification (a newer one replaces it).

        Each row: ``notification_id``, ``event_id``, ``destination``, ``reason`` and
        ``event_json``/``attempts_json`` (or ``event``/``attempts`` as objects).
        """
        if not rows:
            return
        now = self._clock()
        values = [_dead_letter_row(row, now) for row in rows]
        with db_errors("storing dead letters"), self._writer.begin() as conn:
            for value in values:
                self._upsert_dead_letter(conn, value)

    @staticmethod
    def _upsert_dead_letter(conn: Connection, value: dict[str, Any]) -> None:
        update = {k: v for k, v in value.items() if k != "notification_id"}
        name = conn.dialect.name
        if name in ("postgresql", "sqlite"):
            dialect_insert = postgresql.insert if name == "postgresql" else sqlite.insert
            stmt = dialect_insert(dead_letters).values(value)
            conn.execute(
                stmt.on_conflict_do_update(index_elements=["notification_id"], set_=update)
            )
            return
        nid = dead_letters.c.notification_id == value["notification_id"]
        conn.execute(delete(dead_letters).where(nid))
        conn.execute(insert(dead_letters).values(value))

    def list_dead_letters(
        self, *, destination: str | None = None, event_id: str | None = None,
        limit: int | None = None
    ) -> list[dict[str, Any]]:
        """Dead letters, oldest first, with ``event`` and ``attempts`` decoded."""
        query = select(dead_letters).order_by(dead_letters.c.created_at, dead_letters.c.id)
        if destination is not None:
            query = query.where(dead_letters.c.destination == destination)
        if event_id is not None:
            query = query.where(dead_letters.c.event_id == event_id)
        with db_errors("listing dead letters"), self._engine.connect() as conn:
            rows = conn.execute(query.limit(limit)).mappings().all()
        return [_dead_letter_out(r) for r in rows]

    def take_dead_letters(
        self, *, destination: str | None = None, ids: Sequence[int] | None = None
    ) -> list[dict[str, Any]]:
        """Remove and return dead letters (for replay), oldest first."""
        query = select(dead_letters).order_by(dead_letters.c.created_at, dead_letters.c.id)
        if destination is not None:
            query = query.where(dead_letters.c.destination == destination)
        if ids is not None:
            query = query.where(dead_letters.c.id.in_(list(ids)))
        with db_errors("taking dead letters"), self._writer.begin() as conn:
            rows = conn.execute(query.with_for_update()).mappings().all()
            if rows:
                taken = [r["id"] for r in rows]
                conn.execute(delete(dead_letters).where(dead_letters.c.id.in_(taken)))
        return [_dead_letter_out(r) for r in rows]

    def purge_dead_letters(self, *, destination: str | None = None) -> int:
        """Delete dead letters (of one destination, or all); returns how many."""
        stmt = delete(dead_letters)
        if destination is not None:
            stmt = stmt.where(dead_letters.c.destination == destination)
        with db_errors("purging dead letters"), self._writer.begin() as conn:
            return conn.execute(stmt).rowcount

    def purge_records_older_than(self, days: float) -> int:
        """Delete attempt records and dead letters older than ``days`` (in bounded batches:
        :func:`purge_in_batches`); returns how many."""
        cutoff = self._clock() - days * 86400.0
        with db_errors("purging old records"):
            return (purge_in_batches(self._writer, attempts, attempts.c.at, cutoff)
                    + purge_in_batches(self._writer, dead_letters,
                                       dead_letters.c.created_at, cutoff))

    def add_audit(
        self,
        action: str,
        *,
        actor: str | None = None,
        remote_addr: str | None = None,
        target: str | None = None,
        detail: str | None = None,
        at: float | None = None,
    ) -> None:
        """Record one administrative action (never pass secret values in ``detail``)."""
        row = {
            "at": self._clock() if at is None else at,
            "actor": actor,
            "remote_addr": remote_addr,
            "action": action,
            "target": target,
            "detail": detail,
        }
        with db_errors("writing the audit log"), self._writer.begin() as conn:
            conn.execute(insert(audit_log).values(row))

    def list_audit(self, limit: int = 100) -> list[dict[str, Any]]:
        """Audit entries, newest first."""
        query = select(audit_log).order_by(audit_log.c.at.desc(), audit_log.c.id.desc())
        with db_errors("reading the audit log"), self._engine.connect() as conn:
            return [dict(r) for r in conn.execute(query.limit(limit)).mappings().all()]
