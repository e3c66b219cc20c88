"""recnotify producer side: the event contract and the publish helpers.

Recorder components import this package; it depends on redis-py only.
"""

from producer.errors import (
    DurabilityError,
    InvalidEvent,
    InvalidPublishOption,
    PublishError,
    RecnotifyError,
)
from producer.events import EVENT_TYPES, Event, parameter_reference, params_for, validate_event
from producer.publish import Publisher, publish

__all__ = [
    "EVENT_TYPES",
    "DurabilityError",
    "Event",
    "InvalidEvent",
    "InvalidPublishOption",
    "PublishError",
    "Publisher",
    "RecnotifyError",
    "parameter_reference",
    "params_for",
    "publish",
    "validate_event",
]
