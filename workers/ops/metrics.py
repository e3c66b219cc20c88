"""Prometheus metrics of the whole fleet, read from Redis at scrape time.

Workers add to shared counters in Redis (see :mod:`workers.state.counters`); this
collector turns them, plus the live sizes of the stream, queue, schedule and
record buffer and the circuit state per destination, into ``recnotify_*``
metrics. Nothing here is per process, so any process serving ``/metrics`` (the
admin service) shows the same numbers. Labels are destination names, outcomes,
reasons and states only: never a URL, header or secret.

Per-destination series are those of the destinations configured now (the
collector reads the store's version every scrape and the list when it changed),
so a deleted destination's series disappear. A scrape is one Redis round trip
(one pipeline: every counter hash, the sizes, the live workers, and the circuit
state and parked count of every destination) whatever the number of destinations.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import redis
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from workers import __version__
from workers.config.settings import Settings
from workers.destinations.cache import ConfigCache, DestinationSource
from workers.destinations.model import Destination
from workers.state.codec import as_text
from workers.state.counters import HEARTBEAT_TTL_S, LATENCY_BUCKETS_MS, heartbeat_index

log = logging.getLogger(__name__)

#: ``recnotify_circuit_state{state}``: one series per state, 1 for the current one.
CIRCUIT_STATES = ("closed", "half_open", "open")
_STATE_ALIASES = {"closed": "closed", "half-open": "half_open", "half_open": "half_open",
                  "open": "open"}
#: The counter hashes read every scrape (workers.state.counters).
_HASHES = ("notifications", "dead_letters", "disabled", "dispatched", "latency")

def _split(field: Any) -> tuple[str, str]:
    dest, _, label = as_text(field).rpartition("|")
    return dest, label


class _LazySource:
    """The store behind ``store_of``, resolved at the first scrape (not at app start)."""

    def __init__(self, store_of: Callable[[], DestinationSource]) -> None:
        self.store_of = store_of

    def version(self) -> int:
        return self.store_of().version()

    def list_destinations(self) -> list[Destination]:
        return self.store_of().list_destinations()


class RecnotifyCollector(Collector):
    """Reads the fleet-wide counters and queue sizes from Redis on every scrape."""

    def __init__(self, settings: Settings, client: redis.Redis,
                 destinations: DestinationSource) -> None:
        self.keys = settings.keys
        self.client = client
        self.config = ConfigCache(destinations)

    def destination_names(self) -> list[str]:
        """The destinations configured now (the last good copy while the store is down)."""
        self.config.refresh()
        return sorted(self.config.index.by_name)

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily("recnotify_build_info", "recnotify version serving these "
                                 "metrics (always 1)", labels=["version"])
        info.add_metric([__version__], 1.0)
        yield info
        up = GaugeMetricFamily("recnotify_redis_up", "1 when Redis answered this scrape")
        try:
            metrics = list(self._collect(self.destination_names()))
        except redis.RedisError as exc:
            log.warning("metrics: Redis did not answer: %s", type(exc).__name__)
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from metrics

    def _collect(self, names: list[str]) -> Iterator[Metric]:
        keys = self.keys
        pipe = self.client.pipeline(transaction=False)
        for name in _HASHES:
            pipe.hgetall(keys.metric(name))
        pipe.llen(keys.deliver_queue)
        pipe.zcard(keys.schedule)
        pipe.llen(keys.records)
        pipe.xlen(keys.events)
        pipe.zcount(heartbeat_index(keys.prefix), time.time() - HEARTBEAT_TTL_S, "+inf")
        pipe.xinfo_groups(keys.events)
        for name in names:
            pipe.hget(keys.circuit(name), "state")
            pipe.zcard(keys.parked(name))
        replies = pipe.execute(raise_on_error=False)
        for reply in replies:
            # a missing stream answers XINFO with an error: no groups; any other is an outage
            if isinstance(reply, redis.RedisError) and reply is not replies[len(_HASHES) + 5]:
                raise reply
        hashes = {name: dict(replies[i]) for i, name in enumerate(_HASHES)}
        queue, schedule, records, stream_len, workers, groups = replies[len(_HASHES):
                                                                        len(_HASHES) + 6]
        per_dest = replies[len(_HASHES) + 6:]
        configured = set(names)
        yield from self._counters(hashes, configured)
        yield self._latency(hashes["latency"], configured)
        yield from self._sizes(queue, schedule, records, stream_len, workers,
                               [] if isinstance(groups, redis.RedisError) else groups)
        yield from self._per_destination(names, per_dest)

    def _counters(self, hashes: dict[str, dict[Any, Any]], configured: set[str]
                  ) -> Iterator[Metric]:
        by_field: dict[str, dict[str, float]] = defaultdict(dict)
        for field, value in hashes["notifications"].items():
            dest, label = _split(field)
            if dest in configured:
                by_field[label][dest] = float(value)
        dead_by_dest: dict[str, float] = defaultdict(float)
        dead = CounterMetricFamily(
            "recnotify_dead_letters", "Notifications that ended as dead letters, by "
            "destination and reason (final, exhausted, refused, internal, invalid, circuit, "
            "expired)",
            labels=["destination", "reason"])
        for field, value in sorted(hashes["dead_letters"].items()):
            dest, reason = _split(field)
            if dest in configured:
                dead.add_metric([dest, reason], float(value))
                dead_by_dest[dest] += float(value)
        attempts = CounterMetricFamily(
            "recnotify_attempts", "Delivery attempts made (HTTP requests sent or tried), "
            "whatever their result", labels=["destination"])
        retries = CounterMetricFamily(
            "recnotify_retries", "Failed attempts after which another attempt was scheduled",
            labels=["destination"])
        waits = CounterMetricFamily(
            "recnotify_waits", "Times a notification was set aside without spending an "
            "attempt (open circuit, rate or in-flight limit)", labels=["destination"])
        notifications = CounterMetricFamily(
            "recnotify_notifications", "Notifications that ended, each counted once: "
            "delivered or dead", labels=["destination", "outcome"])
        for dest in sorted(configured):
            attempts.add_metric([dest], by_field["attempts"].get(dest, 0.0))
            retries.add_metric([dest], by_field["retries"].get(dest, 0.0))
            waits.add_metric([dest], by_field["waits"].get(dest, 0.0))
            notifications.add_metric([dest, "delivered"], by_field["delivered"].get(dest, 0.0))
            notifications.add_metric([dest, "dead"], dead_by_dest.get(dest, 0.0))
        disabled = CounterMetricFamily(
            "recnotify_destinations_disabled", "Times a destination was disabled by a "
            "410 Gone answer", labels=["destination"])
        for field, value in sorted(hashes["disabled"].items()):
            dest = _split(field)[0]
            if dest in configured:
                disabled.add_metric([dest], float(value))
        dispatched = {_split(field)[0]: float(value)
                      for field, value in hashes["dispatched"].items()}
        events = CounterMetricFamily(
            "recnotify_events_dispatched", "Events read from the stream and fanned out")
        events.add_metric([], dispatched.get("events", 0.0))
        made = CounterMetricFamily(
            "recnotify_notifications_dispatched", "Notifications made from events "
            "(queued for delivery or parked)")
        made.add_metric([], dispatched.get("notifications", 0.0))
        yield from (attempts, retries, waits, notifications, dead, disabled, events, made)

    def _latency(self, values_by_field: dict[Any, Any], configured: set[str]) -> Metric:
        family = HistogramMetricFamily(
            "recnotify_delivery_latency_seconds", "Time from request to response of attempts "
            "that got an HTTP answer", labels=["destination"])
        per_dest: dict[str, dict[str, float]] = defaultdict(dict)
        for field, value in values_by_field.items():
            dest, label = _split(field)
            if dest in configured:
                per_dest[dest][label] = float(value)
        for dest, values in sorted(per_dest.items()):
            cumulative = 0.0
            buckets: list[tuple[str, float]] = []
            for le in LATENCY_BUCKETS_MS:
                cumulative += values.get(f"{le:g}", 0.0)
                buckets.append((f"{le / 1000:g}", cumulative))
            # the buckets' sum (a '|count' field of earlier builds is not needed)
            count = cumulative + values.get("+Inf", 0.0)
            buckets.append(("+Inf", count))
            family.add_metric([dest], buckets, values.get("sum", 0.0) / 1000)
        return family

    def _sizes(self, queue: Any, schedule: Any, records: Any, stream_len: Any, workers: Any,
               groups: Iterable[dict[Any, Any]]) -> Iterator[Metric]:
        for name, help_text, value in (
            ("recnotify_delivery_queue_depth", "Delivery tasks waiting in the Celery queue",
             queue),
            ("recnotify_schedule_size", "Retries waiting in the durable schedule (long waits)",
             schedule),
            ("recnotify_records_backlog", "Attempt records buffered in Redis, not yet in the "
             "database", records),
            ("recnotify_stream_length", "Entries in the event stream", stream_len),
            ("recnotify_workers", "Workers with a live heartbeat", workers),
        ):
            gauge = GaugeMetricFamily(name, help_text)
            gauge.add_metric([], float(value))
            yield gauge
        lag = GaugeMetricFamily("recnotify_stream_lag", "Stream entries not yet read by the "
                                "workers' consumer group", labels=["group"])
        pending = GaugeMetricFamily("recnotify_stream_pending", "Stream entries read but not "
                                    "yet acknowledged", labels=["group"])
        for group in groups:
            name = as_text(group.get("name", ""))
            lag.add_metric([name], float(group.get("lag") or 0))
            pending.add_metric([name], float(group.get("pending") or 0))
        yield from (lag, pending)

    def _per_destination(self, names: list[str], replies: list[Any]) -> Iterator[Metric]:
        circuits = GaugeMetricFamily(
            "recnotify_circuit_state", "Circuit breaker state per destination: 1 for the "
            "current state (closed, half_open, open), 0 for the others",
            labels=["destination", "state"])
        parked = GaugeMetricFamily(
            "recnotify_parked_notifications", "Notifications parked while their "
            "destination's circuit is open", labels=["destination"])
        configured = GaugeMetricFamily("recnotify_destinations",
                                       "Destinations configured now")
        configured.add_metric([], float(len(names)))
        for index, name in enumerate(names):
            raw_state, parked_count = replies[2 * index], replies[2 * index + 1]
            state = _STATE_ALIASES.get(as_text(raw_state or b"closed").lower(), "closed")
            for each in CIRCUIT_STATES:
                circuits.add_metric([name, each], 1.0 if each == state else 0.0)
            parked.add_metric([name], float(parked_count))
        yield from (configured, circuits, parked)


def make_registry(settings: Settings, client: redis.Redis,
                  store_of: Callable[[], DestinationSource]) -> CollectorRegistry:
    """A registry holding only the recnotify collector (no process metrics of one host);
    ``store_of`` gives the configuration store (resolved at the first scrape)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RecnotifyCollector(settings, client, _LazySource(store_of)))
    return registry
