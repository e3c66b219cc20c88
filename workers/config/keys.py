"""Every Redis key recnotify uses, named in one place, under one configurable prefix.

``Keys(prefix)`` gives each name; ``Settings.keys`` is the one a process uses. The Lua
scripts receive their keys through ``KEYS[]`` from here (state/scripts.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from producer.constants import events_key

__all__ = ["Keys"]


@dataclass(frozen=True, slots=True)
class Keys:
    """Redis key names (all under ``prefix``)."""

    prefix: str

    @property
    def events(self) -> str:
        return events_key(self.prefix)

    @property
    def group(self) -> str:
        return f"{self.prefix}workers"

    def event(self, event_id: str) -> str:
        return f"{self.prefix}ev:{event_id}"

    def backfill(self, job_id: str) -> str:
        """A backfill's checkpoint (ops/backfill.py): selection, cursor, counts, state."""
        return f"{self.prefix}backfill:{job_id}"

    def backfill_lock(self, job_id: str) -> str:
        """Held by the one process running that backfill (refreshed while it runs)."""
        return f"{self.prefix}backfill-lock:{job_id}"

    def notification(self, nid: str) -> str:
        return f"{self.prefix}n:{nid}"

    def notification_log(self, nid: str) -> str:
        """Every attempt of one notification, oldest first (JSON entries)."""
        return f"{self.prefix}n:{nid}:log"

    def lock(self, nid: str) -> str:
        return f"{self.prefix}lock:{nid}"

    @property
    def schedule(self) -> str:
        return f"{self.prefix}schedule"

    @property
    def watchdog(self) -> str:
        """Every queued notification, scored by when it must have been seen again."""
        return f"{self.prefix}watchdog"

    @property
    def records(self) -> str:
        return f"{self.prefix}records"

    @property
    def config_version(self) -> str:
        return f"{self.prefix}config:version"

    def heartbeat(self, node: str) -> str:
        return f"{self.prefix}hb:{node}"

    @property
    def heartbeats(self) -> str:
        return f"{self.prefix}hb:"

    @property
    def deliver_queue(self) -> str:
        return f"{self.prefix}deliver"

    def metric(self, name: str) -> str:
        """Metric hashes shared by all workers (field ``destination|label``), see metrics.py."""
        return f"{self.prefix}metrics:{name}"

    def inflight_slots(self, destination: str) -> str:
        """``max_in_flight``: a sorted set of slot tokens scored by expiry."""
        return f"{self.prefix}inflight:{destination}"

    def rate_bucket(self, destination: str) -> str:
        """``rate_limit_per_s``: the token bucket's hash."""
        return f"{self.prefix}rate:{destination}"

    def circuit(self, destination: str) -> str:
        return f"{self.prefix}circuit:{destination}"

    def parked(self, destination: str) -> str:
        """Notifications parked while the destination's circuit is open (state/parking.py)."""
        return f"{self.prefix}parked:{destination}"

    def ord_queue(self, pair: str) -> str:
        """An ordered (destination, recording) pair's waiting notifications (stream order).
        ``workers/state/lua/_ordering_release.lua`` builds the same name from the prefix."""
        return f"{self.prefix}ord:q:{pair}"

    @property
    def ord_inflight(self) -> str:
        """Each ordered pair's released head (``member@released_at``, or ``@held``)."""
        return f"{self.prefix}ord:inflight"

    @property
    def ord_blocked(self) -> str:
        """Ordered pairs whose head waits for the stream frontier."""
        return f"{self.prefix}ord:blocked"

    def waiting(self, destination: str) -> str:
        """The ids of the destination's notifications now waiting (a retry, a gate, or
        parked): added by ``state.writes.queue_waiting`` and a retrying conclusion,
        removed when one is attempted or ends (the admin page's "waiting" count)."""
        return f"{self.prefix}waiting:{destination}"

    def parked_since(self, destination: str) -> str:
        """When each of ``parked(destination)``'s members was parked (score: seconds)."""
        return f"{self.prefix}parked-since:{destination}"

    def parked_expiry(self, destination: str) -> str:
        """When each of ``parked(destination)``'s members expires, for those whose
        destination sets ``expire_after_s`` (score: seconds; ParkingLot.bury_expired)."""
        return f"{self.prefix}parked-expiry:{destination}"

    @property
    def parked_index(self) -> str:
        """The destinations that have parked notifications."""
        return f"{self.prefix}parked-index"

    @property
    def circuits_open(self) -> str:
        """The destinations whose circuit is open or half-open (kept by state/circuit.py)."""
        return f"{self.prefix}circuits-open"
