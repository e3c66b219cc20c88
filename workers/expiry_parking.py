"""Parked notifications that expire (SPEC 4 ``expire_after_s``, workers/expiry.py).

A notification parked by an open circuit runs no task, so no attempt can find it
expired: the parking sweep does. ``ParkingLot.park`` keeps each parked member's
expiry in ``parked-expiry:{destination}`` (score: when it expires); every sweep of a
destination that sets ``expire_after_s`` asks ``lua/parking_expire.lua`` for the
members due and buries them here, each with its own event type's reason
(``expired after N s``, kind ``expired``). The circuit rule does not apply: an
expired notification is not worth a probe's verdict.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from producer.events import load_stored_event
from workers.destination_model import Destination
from workers.expiry import EXPIRED, limit_for, reason

if TYPE_CHECKING:
    from workers.parking import ParkingLot

__all__ = ["bury_expired", "expired_reason"]


def expired_reason(dest: Destination, raw_event: bytes | None) -> str:
    """``expired after N s`` with the limit of the parked notification's event type."""
    event_type = ""
    if raw_event is not None:
        try:
            event_type = load_stored_event(raw_event).type
        except Exception:  # a poison event still expires, with the destination's limit
            event_type = ""
    limit = limit_for(dest.expire_after_s, event_type)
    if limit is None and isinstance(dest.expire_after_s, dict) and dest.expire_after_s:
        limit = min(dest.expire_after_s.values())
    return reason(limit) if limit is not None else "expired"


def bury_expired(lot: ParkingLot, dest: Destination) -> int:
    """Dead-letter ``dest``'s parked notifications whose expiry has passed; how many."""
    keys = lot.keys
    members: Any = lot.scripts.run(
        "parking_expire", [keys.parked_expiry(dest.name), keys.parked(dest.name)],
        [lot.batch, lot.lease_s])
    if not members:
        return 0
    names = [m.decode() if isinstance(m, bytes) else str(m) for m in members]
    return lot.bury(dest, names, lambda raw: expired_reason(dest, raw), kind=EXPIRED)
