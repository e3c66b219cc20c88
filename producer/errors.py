"""The one error root of recnotify, and its whole tree (drawn here once).

Every error recnotify raises on purpose derives from :class:`RecnotifyError`. Its
message names the bad value and, where it helps, what would fix it; the CLI prints it
as one line (exit 1) and the admin API as ``{"errors": [...]}``::

    RecnotifyError
    ├── InvalidEvent (ValueError)          an event breaks SPEC 1/2 (.field, .value)
    ├── InvalidRedisUrl (ValueError)       a Redis URL recnotify cannot use (password masked)
    ├── PublishError (ConnectionError)     Redis did not accept the event in time: NOT published
    │                                      (.cell: which cell, with cells)
    ├── DurabilityError                    a durable publish: too few replicas have it (yet)
    ├── InvalidPublishOption (ValueError)  a Publisher option that makes no sense
    └── (workers.errors: the service side)
        ├── InvalidValue (ValueError)      a value breaks a rule: a retry policy, a CIDR, a
        │                                  signing secret (the message names it and the fix)
        ├── InvalidDestination (ValueError) a destination breaks SPEC 4; .errors: each field
        │   └── DestinationExists          create with a name that is taken
        ├── InvalidFilter (ValueError)     (workers.destinations.filters) a filter that does
        │                                  not compile; parse_destination makes field errors
        ├── DestinationNotFound (KeyError) no destination by that name
        ├── ConfigError                    bad settings or environment (what, where, the fix)
        ├── StoreError                     the configuration database failed or is unreachable
        ├── DeliveryError                  a notification cannot be rendered or sent
        │   ├── RefusedAddress             the host resolves to a refused address (SSRF rules)
        │   └── DeadLettered               the task's end when its notification is a dead letter
        └── ApiError                       (workers.admin.errors) an admin API answer other
                                           than 2xx: status and (field, message) pairs

This package stands alone (recorders import it without the workers), so the service's
branches live in :mod:`workers.errors`.
"""

from __future__ import annotations

from typing import Any


class RecnotifyError(Exception):
    """Root of every error recnotify raises on purpose."""


class InvalidEvent(RecnotifyError, ValueError):
    """An event breaks the contract; ``field`` and ``value`` say where and what."""

    def __init__(self, field: str, value: Any, message: str) -> None:
        self.field = field
        self.value = value
        super().__init__(message)


class PublishError(RecnotifyError, ConnectionError):
    """Redis did not accept the event within ``publish_timeout_s``: it was NOT published."""

    #: with cells: the name of the cell that refused it (the message names it too)
    cell: str | None = None


class InvalidRedisUrl(RecnotifyError, ValueError):
    """A Redis URL recnotify cannot use; the message names it (password masked)."""


class DurabilityError(RecnotifyError):
    """A durable publish: the primary has the event but fewer than ``wanted`` replicas
    acknowledged it in time. It may still be delivered; a retry may duplicate it (the
    event id dedupes). ``event_id``, ``entry_id``, ``wanted``, ``acknowledged`` say which."""

    def __init__(self, message: str, *, event_id: str, entry_id: str, wanted: int,
                 acknowledged: int) -> None:
        super().__init__(message)
        self.event_id = event_id
        self.entry_id = entry_id
        self.wanted = wanted
        self.acknowledged = acknowledged


class InvalidPublishOption(RecnotifyError, ValueError):
    """A ``Publisher`` option (durable replicas, timeouts) that makes no sense."""
