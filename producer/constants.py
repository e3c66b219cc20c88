"""Defaults and Redis key names shared by producers and workers (one place for all)."""

from __future__ import annotations

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_KEY_PREFIX = "recnotify:"
DEFAULT_PUBLISH_TIMEOUT_S = 5.0
#: A durable publish waits this long for its replicas (``WAIT``) before DurabilityError.
DEFAULT_DURABLE_TIMEOUT_MS = 1000

#: An event serialized as JSON may not be larger than this.
MAX_EVENT_BYTES = 64 * 1024
#: The wire format version producers write in the ``schema`` field.
SCHEMA_VERSION = 1

ENV_REDIS_URL = "RECNOTIFY_REDIS_URL"
ENV_KEY_PREFIX = "RECNOTIFY_KEY_PREFIX"


def events_key(prefix: str) -> str:
    """The event stream: ``XADD {prefix}events * event <JSON>``."""
    return f"{prefix}events"
