"""The events a stream still retains, copied into the database's ``events`` table.

Since migration 0003 the consumer buffers every event it reads for the database, and the
stream keeps consumed entries only briefly (``RECNOTIFY_STREAM_RETENTION_S``). Events
consumed by an earlier version are only in the stream: ``recnotify db upgrade`` copies
them (:func:`copy_stream_to_database`) before new workers trim the stream, so trace,
dead-letter replay and backfill keep the history they had. Idempotent: an id the
database has keeps its row.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from producer.errors import InvalidEvent
from producer.events import parse_event_json
from workers.config.keys import Keys
from workers.state.codec import as_text
from workers.state.entries import entry_event_id, entry_time
from workers.state.records import ucid_of

__all__ = ["copy_stream_to_database"]

PAGE = 1000


def copy_stream_to_database(client: redis.Redis, keys: Keys, store: Any) -> int:
    """Copy every readable event of the stream into the database; how many were read
    (unreadable entries were dead-lettered when consumed and are skipped)."""
    copied, cursor = 0, "-"
    while True:
        page: Any = client.xrange(keys.events, cursor, "+", count=PAGE)
        if not page:
            return copied
        rows = []
        for raw_id, fields in page:
            entry_id = as_text(raw_id)
            try:
                event = parse_event_json(fields.get(b"event", b""),
                                         default_id=entry_event_id(keys.events, entry_id),
                                         default_occurred_at=entry_time(entry_id))
            except InvalidEvent:
                continue
            rows.append({"event_id": event.id, "entry_id": entry_id, "type": event.type,
                         "ucid": ucid_of(event),
                         "event_json": event.to_json(), "stored_at": time.time()})
        store.add_events(rows)
        copied += len(rows)
        if len(page) < PAGE:
            return copied
        cursor = f"({as_text(page[-1][0])}"
