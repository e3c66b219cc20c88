"""The one error root of recnotify, and the producer-side branches.

Every error recnotify raises on purpose derives from :class:`RecnotifyError`::

    RecnotifyError
    ├── InvalidEvent (also ValueError)       an event breaks SPEC section 1/2
    ├── PublishError (also ConnectionError)  Redis did not accept the event in time
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
