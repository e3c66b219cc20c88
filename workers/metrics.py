"""Prometheus metrics of the whole fleet, read from Redis at scrape time.

Workers add to shared counters in Redis (see :mod:`workers.metrics_keys`); this
collector turns them, plus the live sizes of the stream, queue, schedule and
record buffer and the circuit state per destination, into ``recnotify_*``
metrics. Nothing here is per process, so any process serving ``/metrics`` (the
admin service) shows the same numbers. Labels are destination names and
outcomes only: never a URL, header or secret.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from workers.metrics_keys import LATENCY_BUCKETS_MS
from workers.settings import Settings

log = logging.getLogger(__name__)

#: ``recnotify_circuit_state`` values.
CIRCUIT_STATES = {"closed": 0.0, "half_open": 1.0, "half-open": 1.0, "open": 2.0}


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _split(field: Any) -> tuple[str, str]:
    dest, _, label = _text(field).rpartition("|")
    return dest, label


class RecnotifyCollector(Collector):
    """Reads the fleet-wide counters and queue sizes from Redis on every scrape."""

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.keys = settings.keys
        self.client = client

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("recnotify_redis_up", "1 when Redis answered this scrape")
        try:
            metrics = list(self._collect())
        except redis.RedisError as exc:
            log.warning("metrics: Redis did not answer: %s", type(exc).__name__)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from metrics

    def _hash(self, name: str) -> dict[Any, Any]:
        return dict(self.client.hgetall(self.keys.metric(name)))

    def _collect(self) -> Iterator[Metric]:
        yield from self._counters()
        yield self._latency()
        yield from self._sizes()
        yield self._circuits()
        yield self._parked()

    def _counters(self) -> Iterator[Metric]:
        notifications = CounterMetricFamily(
            "recnotify_notifications", "Notification attempts by destination and outcome "
            "(delivered, retrying, dead, waiting)", labels=["destination", "outcome"])
        retries = CounterMetricFamily(
            "recnotify_retries", "Attempts that failed and were scheduled for a retry",
            labels=["destination"])
        for field, value in sorted(self._hash("notifications").items()):
            dest, outcome = _split(field)
            notifications.add_metric([dest, outcome], float(value))
            if outcome == "retrying":
                retries.add_metric([dest], float(value))
        dead = CounterMetricFamily(
            "recnotify_dead_letters", "Notifications dead-lettered, by destination and reason "
            "(final, exhausted, refused, internal, invalid, circuit)",
            labels=["destination", "reason"])
        for field, value in sorted(self._hash("dead_letters").items()):
            dest, reason = _split(field)
            dead.add_metric([dest, reason], float(value))
        disabled = CounterMetricFamily(
            "recnotify_destinations_disabled", "Destinations disabled by a 410 Gone answer",
            labels=["destination"])
        for field, value in sorted(self._hash("disabled").items()):
            disabled.add_metric([_split(field)[0]], float(value))
        dispatched = CounterMetricFamily(
            "recnotify_dispatched", "Events read from the stream and notifications enqueued",
            labels=["kind"])
        for field, value in sorted(self._hash("dispatched").items()):
            dispatched.add_metric([_split(field)[0]], float(value))
        yield from (notifications, retries, dead, disabled, dispatched)

    def _latency(self) -> Metric:
        family = HistogramMetricFamily(
            "recnotify_delivery_latency_seconds", "Time from request to response of attempts "
            "that got an HTTP answer", labels=["destination"])
        per_dest: dict[str, dict[str, float]] = defaultdict(dict)
        for field, value in self._hash("latency").items():
            dest, label = _split(field)
            per_dest[dest][label] = float(value)
        for dest, values in sorted(per_dest.items()):
            cumulative = 0.0
            buckets: list[tuple[str, float]] = []
            for le in LATENCY_BUCKETS_MS:
                cumulative += values.get(f"{le:g}", 0.0)
                buckets.append((f"{le / 1000:g}", cumulative))
            count = values.get("count", cumulative + values.get("+Inf", 0.0))
            buckets.append(("+Inf", count))
            family.add_metric([dest], buckets, values.get("sum", 0.0) / 1000)
        return family

    def _sizes(self) -> Iterator[Metric]:
        keys = self.keys
        pipe = self.client.pipeline(transaction=False)
        pipe.llen(keys.deliver_queue)
        pipe.zcard(keys.schedule)
        pipe.llen(keys.records)
        pipe.xlen(keys.events)
        queue, schedule, records, stream_len = pipe.execute()
        for name, help_text, value in (
            ("recnotify_delivery_queue_depth", "Delivery tasks waiting in the Celery queue",
             queue),
            ("recnotify_schedule_size", "Retries waiting in the durable schedule (long waits)",
             schedule),
            ("recnotify_records_backlog", "Attempt records buffered in Redis, not yet in the "
             "database", records),
            ("recnotify_stream_length", "Entries in the event stream", stream_len),
        ):
            gauge = GaugeMetricFamily(name, help_text)
            gauge.add_metric([], float(value))
            yield gauge
        lag = GaugeMetricFamily("recnotify_stream_lag", "Stream entries not yet read by the "
                                "workers' consumer group", labels=["group"])
        pending = GaugeMetricFamily("recnotify_stream_pending", "Stream entries read but not "
                                    "yet acknowledged", labels=["group"])
        try:
            groups = self.client.xinfo_groups(keys.events)
        except redis.ResponseError:  # no stream yet
            groups = []
        for group in groups:
            name = _text(group.get("name", ""))
            lag.add_metric([name], float(group.get("lag") or 0))
            pending.add_metric([name], float(group.get("pending") or 0))
        workers = GaugeMetricFamily("recnotify_workers", "Workers with a live heartbeat")
        workers.add_metric([], float(sum(1 for _ in self.client.scan_iter(
            match=keys.heartbeats + "*", count=500))))
        yield from (lag, pending, workers)

    def _circuits(self) -> Metric:
        """Circuit state per destination (0 closed, 1 half-open, 2 open) where one is kept."""
        family = GaugeMetricFamily("recnotify_circuit_state", "Circuit breaker state per "
                                   "destination: 0 closed, 1 half-open, 2 open",
                                   labels=["destination"])
        prefix = self.keys.circuit("")
        for key in self.client.scan_iter(match=prefix + "*", count=500):
            name = _text(key)[len(prefix):]
            if ":" in name:  # a sub-key of the breaker (counters, probes), not its state
                continue
            state = self._circuit_state(key)
            if state is not None:
                family.add_metric([name], state)
        return family

    def _parked(self) -> Metric:
        """Notifications waiting for their destination's circuit to close (parking.py)."""
        family = GaugeMetricFamily("recnotify_parked", "Notifications parked while their "
                                   "destination's circuit is open", labels=["destination"])
        names = sorted(_text(m) for m in self.client.smembers(self.keys.parked_index))
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.zcard(self.keys.parked(name))
        for name, count in zip(names, pipe.execute(), strict=True):
            family.add_metric([name], float(count))
        return family

    def _circuit_state(self, key: Any) -> float | None:
        kind = _text(self.client.type(key))
        raw: Any = None
        if kind == "string":
            raw = self.client.get(key)
        elif kind == "hash":  # workers/circuit.py: field ``state``, absent while closed
            raw = self.client.hget(key, "state") or b"closed"
        if raw is None:
            return None
        text = _text(raw).lower()
        if text in CIRCUIT_STATES:
            return CIRCUIT_STATES[text]
        try:
            return float(text)
        except ValueError:
            return None


def make_registry(settings: Settings, client: redis.Redis) -> CollectorRegistry:
    """A registry holding only the recnotify collector (no process metrics of one host)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RecnotifyCollector(settings, client))
    return registry
