"""Counters every worker adds to in Redis, so /metrics sees the whole fleet.

Each metric is a Redis hash ``{prefix}metrics:NAME``; fields are
``destination|label`` and values counts (HINCRBY / HINCRBYFLOAT in the pipeline
or script a delivery already runs, so they cost no extra round trip; the per-attempt
ones are summed in the worker process first and sent every half second, :class:`Tally`):

- ``notifications`` (:class:`Tally`, :func:`count_wait`):
  ``dest|attempts`` every concluded attempt, ``dest|retries`` those after which
  another attempt is due, ``dest|delivered`` notifications that ended delivered
  (their last attempt), ``dest|waits`` times one waited without spending an attempt.
  (Fields of earlier builds -- ``retrying``, ``dead``, ``waiting`` -- are not exported.)
- ``latency`` (:class:`Tally`): field ``dest|le`` per histogram bucket (cumulative when exported),
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

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("recnotify.counters")

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


#: The ``notifications`` field an attempt's outcome adds to besides ``attempts`` (a dead
#: one is counted once, by its reason, where it becomes a dead letter: workers.state.writes).
_OUTCOME_FIELDS = {"retrying": "retries", "delivered": "delivered"}
#: How often a worker process sends its :class:`Tally` to Redis (its housekeeping loop).
TALLY_FLUSH_S = 0.5


class Tally:
    """This process's additions to the per-attempt counters, sent to Redis in batches.

    A concluded attempt adds ``notifications`` ``dest|attempts`` (and ``dest|retries`` or
    ``dest|delivered``) and its ``latency`` bucket and sum here, in memory, instead of four
    ``HINCRBY``/``HINCRBYFLOAT`` per attempt in its script; :meth:`flush` adds the sums to
    the same hashes in one ``MULTI`` (so /metrics reads what it always read). The worker's
    housekeeping loop flushes every :data:`TALLY_FLUSH_S` (``workers.taskqueue.service``),
    and again when the process stops or exits (``atexit``). What a crash (``kill -9``, power
    loss) loses is the counts of at most one flush interval; a flush that fails (Redis
    down) keeps its counts for the next one (an ``EXEC`` whose reply was lost may then be
    counted twice). Counters are monitoring only: no delivery decision reads them.
    """

    def __init__(self, client: Any, metric_key: Callable[[str], str]) -> None:
        self.client = client
        self.metric_key = metric_key
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._sums: dict[tuple[str, str], float] = {}
        #: flushes that sent something (tests and benchmarks wait on it)
        self.flushes = 0

    def attempt(self, destination: str, outcome: str, latency_ms: float | None,
                sign: int = 1) -> None:
        """Count one concluded attempt (``latency_ms`` None: no answer; ``sign`` -1 takes
        a count back, when the attempt's script did not run)."""
        fields = [("notifications", f"{destination}|attempts")]
        label = _OUTCOME_FIELDS.get(outcome)
        if label is not None:
            fields.append(("notifications", f"{destination}|{label}"))
        if latency_ms is not None:
            fields.append(("latency", f"{destination}|{bucket_for(latency_ms)}"))
        with self._lock:
            for key in fields:
                self._counts[key] = self._counts.get(key, 0) + sign
            if latency_ms is not None:
                key = ("latency", f"{destination}|sum")
                self._sums[key] = self._sums.get(key, 0.0) + sign * round(latency_ms, 3)

    def pending(self) -> bool:
        with self._lock:
            return bool(self._counts or self._sums)

    def flush(self) -> int:
        """Send what was counted since the last flush; returns how many fields."""
        with self._lock:
            counts, self._counts = self._counts, {}
            sums, self._sums = self._sums, {}
        if not counts and not sums:
            return 0
        pipe = self.client.pipeline(transaction=True)
        for (metric, field), amount in counts.items():
            if amount:
                pipe.hincrby(self.metric_key(metric), field, amount)
        for (metric, field), total in sums.items():
            pipe.hincrbyfloat(self.metric_key(metric), field, round(total, 3))
        try:
            pipe.execute()
        except Exception:
            with self._lock:  # the next flush sends them
                for key, amount in counts.items():
                    self._counts[key] = self._counts.get(key, 0) + amount
                for key, total in sums.items():
                    self._sums[key] = self._sums.get(key, 0.0) + total
            raise
        self.flushes += 1
        return len(counts) + len(sums)

    def flush_quietly(self) -> None:
        """:meth:`flush` at exit: nothing to do about a failure then but say so."""
        try:
            self.flush()
        except Exception as exc:
            log.warning("counters of this process not sent at exit: %s", exc)
