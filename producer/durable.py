"""Opt-in durable publishing: ``XADD`` then ``WAIT N timeout`` on the same connection.

Redis replicates asynchronously: an event the primary accepted can be lost if the
primary dies before a replica has it (a ``kill -9`` failover). With
``durable_replicas=N`` the publisher sends ``XADD`` and ``WAIT N timeout_ms`` in one
pipeline (one connection, so ``WAIT`` counts the replicas that have *this* write) and
only returns once N replicas acknowledged it; fewer within the timeout raises
:class:`producer.errors.DurabilityError`. The event may then still be in the stream
(the primary has it), so a retry may publish it twice: republish the *same* event
(``Publisher.publish_event(event)``) so its id lets receivers deduplicate.
"""

from __future__ import annotations

import redis

from producer.errors import InvalidPublishOption

#: The longest ``WAIT`` may block; ``WAIT N 0`` would block forever and is refused.
MAX_DURABLE_TIMEOUT_MS = 60_000


def check_durable_options(replicas: int, timeout_ms: int, publish_timeout_s: float) -> None:
    """Refuse options that make no sense or could hang (``WAIT`` with timeout 0)."""
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise InvalidPublishOption(f"durable_replicas={replicas!r}: give a whole number >= 0 "
                                   "(0 = do not wait for replicas)")
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or not (
            0 < timeout_ms <= MAX_DURABLE_TIMEOUT_MS):
        raise InvalidPublishOption(f"durable_timeout_ms={timeout_ms!r}: give a whole number of "
                                   f"milliseconds > 0 and <= {MAX_DURABLE_TIMEOUT_MS}")
    if replicas and timeout_ms / 1000 >= publish_timeout_s:
        raise InvalidPublishOption(
            f"durable_timeout_ms={timeout_ms} must be shorter than publish_timeout_s="
            f"{publish_timeout_s:g} s (the connection's read timeout)")


def durability_problem(event_id: str, entry_id: str, wanted: int, acknowledged: int,
                       timeout_ms: int) -> str | None:
    """None when enough replicas acknowledged, else the message of the error to raise."""
    if acknowledged >= wanted:
        return None
    return (f"event {event_id} is on the primary (stream entry {entry_id}) but only "
            f"{acknowledged} of {wanted} replica(s) acknowledged it within {timeout_ms} ms: "
            "it may be lost if the primary fails now, and it may also still be delivered; "
            "a retry may publish it twice (republish the same event so its id dedupes)")


def refused_for_replicas(exc: Exception) -> bool:
    """True for ``NOREPLICAS``: a primary with ``min-replicas-to-write`` refused the write
    (nothing was written; retrying is safe, it succeeds once replicas are back)."""
    return str(exc).startswith("NOREPLICAS")


def xadd_and_wait(client: redis.Redis, stream: str, payload: str, replicas: int,
                  timeout_ms: int) -> tuple[str, int]:
    """``XADD`` then ``WAIT`` in one pipeline: (the entry id, replicas that acknowledged)."""
    pipe = client.pipeline(transaction=False)
    pipe.xadd(stream, {"event": payload})
    pipe.wait(replicas, timeout_ms)
    entry_id, acknowledged = pipe.execute()
    entry = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    return entry, int(acknowledged)
