"""Worker-side branches of the error tree rooted in :class:`producer.errors.RecnotifyError`.

::

    RecnotifyError                       (producer.errors)
    ├── InvalidEvent (ValueError)        (producer.errors)
    ├── PublishError (ConnectionError)   (producer.errors)
    ├── InvalidDestination (ValueError)  a destination breaks SPEC 4; .errors lists each field
    │   └── DestinationExists            create with a name that is taken
    ├── InvalidFilter (ValueError)       (workers.filters) a filter that cannot compile;
    │                                    parse_destination turns it into field errors
    ├── DestinationNotFound (KeyError)   no destination by that name
    ├── ConfigError                      bad settings or environment (what, where, how to fix)
    ├── StoreError                       the configuration database failed or is unreachable
    └── DeliveryError                    a notification cannot be rendered or sent
        ├── RefusedAddress               the host resolves to a refused address (SSRF rules)
        └── DeadLettered                 the task's end when its notification is a dead letter
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from producer.errors import InvalidEvent, PublishError, RecnotifyError

__all__ = [
    "ConfigError",
    "DeadLettered",
    "DeliveryError",
    "DestinationExists",
    "DestinationNotFound",
    "FieldError",
    "InvalidDestination",
    "InvalidEvent",
    "PublishError",
    "RecnotifyError",
    "RefusedAddress",
    "StoreError",
]


@dataclass(frozen=True)
class FieldError:
    """One refused field: ``message`` names the destination, the field and the bad value."""

    field: str
    value: Any
    message: str


class InvalidDestination(RecnotifyError, ValueError):
    """A destination breaks SPEC section 4. ``errors`` holds one entry per bad field."""

    def __init__(self, destination: str | None, errors: list[FieldError]) -> None:
        self.destination = destination
        self.errors = errors
        super().__init__("; ".join(e.message for e in errors))

    @property
    def field(self) -> str:
        return self.errors[0].field

    @property
    def value(self) -> Any:
        return self.errors[0].value


class DestinationExists(InvalidDestination):
    """A destination with this name already exists (create, not update)."""


class DestinationNotFound(RecnotifyError, KeyError):
    """No destination has this name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"no destination named {name!r} (see `recnotify destinations list`)")

    def __str__(self) -> str:
        return str(self.args[0])


class ConfigError(RecnotifyError):
    """Bad settings or environment; the message says what, where and how to fix it."""


class StoreError(RecnotifyError):
    """The configuration database failed or cannot be reached."""


class DeliveryError(RecnotifyError):
    """A notification cannot be rendered or sent."""


class RefusedAddress(DeliveryError):
    """The destination host resolves to an address an outbound rule refuses (final)."""

    def __init__(self, host: str, address: str, rule: str) -> None:
        self.host = host
        self.address = address
        self.rule = rule
        super().__init__(f"refused address {address} for host {host!r}: matches rule {rule}")


class DeadLettered(DeliveryError):
    """Raised by the ``recnotify.deliver`` task when its notification ended as a dead letter,
    so Flower shows it as FAILURE with the reason (declared in the task's ``throws``: the
    worker logs one line, no traceback). The message holds ids, the attempt count and the
    dead-letter reason, never a URL or secret; the fix is in the admin page or
    ``recnotify dead-letters``."""

    def __init__(self, message: str, *, notification_id: str = "", attempts: int = 0) -> None:
        super().__init__(message)
        self.notification_id = notification_id
        self.attempts = attempts
