"""The one error root of recnotify, and the producer-side branches.

Every error recnotify raises on purpose derives from :class:`RecnotifyError`::

    RecnotifyError
    ├── InvalidEvent (also ValueError)       an event breaks SPEC section 1/2
    ├── PublishError (also ConnectionError)  Redis did not accept the event in time
    ├── DurabilityError                      a durable publish: too few replicas have it
    ├── InvalidPublishOption (also ValueError)  a Publisher option makes no sense
    └── (workers.errors adds)
        ├── InvalidDestination (also ValueError)  a destination breaks SPEC section 4
        ├── ConfigError                           bad settings / environment
        ├── StoreError                            the configuration database failed
        └── DeliveryError                         one HTTP attempt failed (carries the outcome)

Messages name the bad value and, where it helps, what would fix it.
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
