"""Counters every worker adds to in Redis, so /metrics sees the whole fleet.

Each metric is a Redis hash ``{prefix}metrics:NAME``; fields are
``destination|label`` and values counts (HINCRBY / HINCRBYFLOAT in the pipeline
or script a delivery already runs, so they cost no extra round trip):

- ``notifications`` (workers/state/lua/attempt_conclude.lua, :func:`count_wait`):
  ``dest|attempts`` every concluded attempt, ``dest|retries`` those after which
  another attempt is due, ``dest|delivered`` notifications that ended delivered
  (their last attempt), ``dest|waits`` times one waited without spending an attempt.
  (Fields of earlier builds -- ``retrying``, ``dead``, ``waiting`` -- are not exported.)
- ``latency``: field ``dest|le`` per histogram bucket (cumulative when exported),
  plus ``dest|sum`` (ms); the count is the buckets' sum (``dest|count``, written by
  earlier builds, is no longer read)
- ``dead_letters``: field ``dest|reason-kind`` (final, exhausted, refused, internal,
  invalid, circuit, expired): a notification that ended dead is counted here once
- ``disabled``: field ``dest|410`` (destinations disabled by 410 Gone)
- ``dispatched``: field ``events|total`` and ``notifications|total``

:func:`heartbeat_index` is a sorted set of the worker nodes scored by their last
heartbeat, so /metrics counts live workers with one ZCOUNT instead of a SCAN.
"""

from __future__ import annotations

from typing import Any

#: A worker's heartbeat key lives this long; /metrics counts nodes that beat within it.
HEARTBEAT_TTL_S = 15

LATENCY_BUCKETS_MS: tuple[float, ...] = (
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    30000,
    60000,
)


def bucket_for(latency_ms: float) -> str:
    for le in LATENCY_BUCKETS_MS:
        if latency_ms <= le:
            return f"{le:g}"
    return "+Inf"


def count_wait(pipe: Any, metric_key: Any, destination: str) -> None:
    """Add a wait without an attempt (open circuit, limits) to ``pipe``."""
    pipe.hincrby(metric_key("notifications"), f"{destination}|waits", 1)


def heartbeat_index(prefix: str) -> str:
    """Worker node -> time of its last heartbeat (seconds), written with the heartbeat."""
    return f"{prefix}hb-index"
