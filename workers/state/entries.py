"""Stream entry ids: the default id and time of an event XADDed without them.

The consumer and the backfill (``ops/backfill.py``) read the same entries, so both
give an entry the same event id and ``occurred_at``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from producer.events import format_timestamp

__all__ = ["ENTRY_NAMESPACE", "entry_event_id", "entry_ms", "entry_time"]

ENTRY_NAMESPACE = uuid.UUID("0b9f7c1e-4d3a-4c55-9e0b-6f1a2d3c4b5a")


def entry_event_id(stream: str, entry_id: str) -> str:
    """The id of an event XADDed without one: the same on every re-read."""
    return str(uuid.uuid5(ENTRY_NAMESPACE, f"{stream}/{entry_id}"))


def entry_ms(entry_id: str) -> int:
    """When Redis added the entry, in Unix milliseconds (the first half of its id)."""
    return int(entry_id.split("-", 1)[0])


def entry_time(entry_id: str) -> str:
    """The entry's time as an ``occurred_at`` timestamp (SPEC 1)."""
    return format_timestamp(datetime.fromtimestamp(entry_ms(entry_id) / 1000, UTC))
