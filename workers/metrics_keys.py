"""Counters every worker adds to in Redis, so /metrics sees the whole fleet.

Each metric is a Redis hash ``{prefix}metrics:NAME``; fields are
``destination|label`` and values counts (HINCRBY / HINCRBYFLOAT in the pipeline
a delivery already runs, so they cost no extra round trip):

- ``notifications``: field ``dest|outcome`` (delivered, retrying, dead, waiting)
- ``latency``: field ``dest|le`` per histogram bucket (cumulative when exported),
  plus ``dest|sum`` (ms) and ``dest|count``
- ``dead_letters``: field ``dest|reason-kind`` (final, exhausted, refused, internal, invalid)
- ``disabled``: field ``dest|410`` (destinations disabled by 410 Gone)
- ``dispatched``: field ``events|total`` and ``notifications|total``
"""

from __future__ import annotations

from typing import Any

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


def count_attempt(
    pipe: Any, metric_key: Any, destination: str, outcome: str, latency_ms: float | None
) -> None:
    """Add one attempt's counters to ``pipe`` (metric_key: name -> Redis key)."""
    pipe.hincrby(metric_key("notifications"), f"{destination}|{outcome}", 1)
    if latency_ms is not None:
        latency = metric_key("latency")
        pipe.hincrby(latency, f"{destination}|{bucket_for(latency_ms)}", 1)
        pipe.hincrbyfloat(latency, f"{destination}|sum", round(latency_ms, 3))
        pipe.hincrby(latency, f"{destination}|count", 1)
