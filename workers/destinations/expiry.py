"""Expiry per event type (SPEC 4 ``expire_after_s``): the pure decisions.

A destination may say how long a notification is worth sending: one number of
seconds for every event type, or a map from event type to seconds (a type missing
from the map never expires). A notification not delivered in time ends as a dead
letter with the reason ``expired after N s`` (dead-letter kind ``expired``).

The clock starts at the event's own time, ``occurred_at``: the moment the receiver
sees in the event (``TIMESTAMP``, the POST body's ``occurred_at``), so "120 s" means
"the recording started at most 120 s before this request". Two corrections:

- never later than the notification's first try (``first_at``): a recorder whose
  clock runs ahead cannot stretch the limit;
- an operator's replay of a dead letter (``replayed_at``) starts it again: replaying
  is the decision that the notification is still wanted.

Where a notification can sit, the deliverer and the parking sweep apply it
(``workers/state/notification.py`` names the transitions): an attempt does not start
once expired, a wait (retry backoff, gate, open circuit) is never longer than the
time left, and a parked one is buried by the sweep at its expiry.

Plain values in, plain values out: no Redis, no clock of its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from producer.events import load_stored_event

__all__ = [
    "EXPIRED",
    "MAX_EXPIRE_AFTER_S",
    "WAKE_MARGIN_S",
    "ExpireAfter",
    "Expiry",
    "capped_wait_s",
    "clock_start_s",
    "expires_at_s",
    "expiry_for",
    "limit_for",
    "occurred_at_s",
    "reason",
]

#: A destination's ``expire_after_s``: seconds for every type, a map per type, or none.
ExpireAfter = float | Mapping[str, float] | None
#: The dead-letter kind (``recnotify_dead_letters_total{reason="expired"}``).
EXPIRED = "expired"
#: The largest limit accepted: events are retained 7 days, nothing is sent after that.
MAX_EXPIRE_AFTER_S = 7 * 24 * 3600.0
#: A wait cut at expiry ends this much after it, so the next run surely finds it expired.
WAKE_MARGIN_S = 0.05


def limit_for(expire_after: ExpireAfter, event_type: str) -> float | None:
    """The limit in seconds that applies to ``event_type`` (None: it never expires)."""
    if expire_after is None:
        return None
    if isinstance(expire_after, Mapping):
        value = expire_after.get(event_type)
        return None if value is None else float(value)
    return float(expire_after)


def occurred_at_s(occurred_at: str) -> float | None:
    """An event's ``occurred_at`` (``2026-11-24T20:01:02.123Z``) as Unix seconds; None
    when it cannot be read (the clock then starts at the first try)."""
    try:
        moment = datetime.fromisoformat(occurred_at.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None
    if moment.tzinfo is None:
        return None
    return moment.timestamp()


def clock_start_s(occurred_s: float | None, first_at_s: float,
                  replayed_at_s: float | None = None) -> float:
    """When the expiry clock started: the event's time, never after the first try, and
    restarted by a replay."""
    start = first_at_s if occurred_s is None or not math.isfinite(occurred_s) else min(
        occurred_s, first_at_s)
    if replayed_at_s is not None:
        start = max(start, replayed_at_s)
    return start


@dataclass(frozen=True, slots=True)
class Expiry:
    """One notification's limit (seconds) and the moment it expires (Unix seconds)."""

    limit_s: float
    at_s: float

    def expired(self, now_s: float) -> bool:
        return now_s >= self.at_s

    def left_s(self, now_s: float) -> float:
        return max(0.0, self.at_s - now_s)

    @property
    def reason(self) -> str:
        return reason(self.limit_s)


def expiry_for(expire_after: ExpireAfter, event_type: str, *, occurred_at: str,
               first_at_s: float, replayed_at_s: float | None = None) -> Expiry | None:
    """The expiry of one notification (None: its destination sets none for its type)."""
    limit = limit_for(expire_after, event_type)
    if limit is None:
        return None
    start = clock_start_s(occurred_at_s(occurred_at), first_at_s, replayed_at_s)
    return Expiry(limit, start + limit)


def capped_wait_s(wait_s: float, now_s: float, expiry: Expiry | None) -> float:
    """The wait to schedule: ``wait_s``, but never past the expiry (then the wait ends
    just after it, and that run dead-letters the notification: dead at expiry, not later)."""
    if expiry is None:
        return wait_s
    return min(wait_s, expiry.left_s(now_s) + WAKE_MARGIN_S)


def reason(limit_s: float) -> str:
    """The dead-letter reason: ``expired after 120 s``."""
    return f"expired after {limit_s:g} s"


def expires_at_s(expire_after: ExpireAfter, event_type: str, *, occurred_at: str,
                 first_at_s: float) -> float | None:
    """:func:`expiry_for`'s moment alone (None: never), e.g. for a parked notification."""
    found = expiry_for(expire_after, event_type, occurred_at=occurred_at, first_at_s=first_at_s)
    return found.at_s if found is not None else None


def expired_reason(expire_after_s: ExpireAfter, raw_event: bytes | None) -> str:
    """``expired after N s`` with the limit of the parked notification's event type."""
    event_type = ""
    if raw_event is not None:
        try:
            event_type = load_stored_event(raw_event).type
        except Exception:  # a poison event still expires, with the destination's limit
            event_type = ""
    limit = limit_for(expire_after_s, event_type)
    if limit is None and isinstance(expire_after_s, dict) and expire_after_s:
        limit = min(expire_after_s.values())
    return reason(limit) if limit is not None else "expired"
