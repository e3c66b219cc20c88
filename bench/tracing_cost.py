"""What tracing costs when off (the default), and when on, measured in one run.

    .venv/bin/python -m bench.tracing_cost [count]

1. Each no-op hook, per call (tracing off): the publish span, the attempt span, the
   consume spans of a batch, the flush span.
2. Publish throughput against the local Redis: ``Publisher.publish`` (hooked, tracing
   off) against the same code path without the hook (``validate_event`` then
   ``publish_event``, which is what ``publish`` did before), interleaved rounds.
3. ``Deliverer.run`` in-process to a fast receiver, tracing off against tracing on (an
   SDK tracer exporting to memory), interleaved rounds: the cost of an attempt span
   and its header when on.
"""

from __future__ import annotations

import statistics
import sys
import time
import timeit
from collections.abc import Callable

import redis
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bench.cluster import Cluster
from producer import tracing
from producer.events import validate_event
from producer.publish import Publisher
from workers.config import telemetry
from workers.taskqueue.runtime import Runtime

ROUNDS = 31
HOOK_NS: dict[str, float] = {}


def per_call_ns(fn: Callable[[], object], number: int = 200_000) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e9


def hooks() -> None:
    assert tracing.tracer() is None
    event = validate_event({"type": "RECORDING_STARTED_EVENT", "route": "r"})
    headers: dict[str, str] = {}
    prepared = [("1-0", b"", event, [])] * 10
    rows = [{"kind": "attempt"}] * 100

    def publish_hook() -> None:
        with tracing.publish_span(event, "s"):
            pass

    def attempt_hook() -> None:
        with telemetry.attempt_span(event, "d", 1, "n", headers) as span:
            span.done(200, None)

    def consume_hook() -> None:
        telemetry.consume_spans(prepared, "s").end()

    def flush_hook() -> None:
        with telemetry.flush_span(rows):
            pass

    print("1. no-op hooks, tracing off (per call):")
    for name, fn in (("publish_span", publish_hook), ("attempt_span + done", attempt_hook),
                     ("consume_spans(10 events) + end", consume_hook),
                     ("flush_span(100 rows)", flush_hook)):
        HOOK_NS[name] = per_call_ns(fn)
        print(f"   {name:32s} {HOOK_NS[name]:7.0f} ns")


def publish(url: str, prefix: str, count: int) -> None:
    publisher = Publisher(url, key_prefix=prefix)
    data = {"type": "RECORDING_STARTED_EVENT", "route": "r", "params": {"UCID": "u"}}

    def hooked() -> None:
        publisher.publish("RECORDING_STARTED_EVENT", route="r", params={"UCID": "u"})

    def bare() -> None:
        publisher.publish_event(validate_event({**data, "result": "success", "error": None,
                                                "account": None, "realm": None}))

    ratios = []
    rates: dict[str, list[float]] = {"hooked": [], "bare": []}
    for round_ in range(ROUNDS):  # ABBA: neither side always runs first
        order = (("bare", bare), ("hooked", hooked))
        for name, fn in order if round_ % 2 else order[::-1]:
            start = time.perf_counter()
            for _ in range(count):
                fn()
            rates[name].append(count / (time.perf_counter() - start))
        ratios.append(rates["hooked"][-1] / rates["bare"][-1])
    print(f"2. publish, {ROUNDS} interleaved rounds of {count}: without the hook "
          f"{statistics.median(rates['bare']):.0f}/s, with it (tracing off) "
          f"{statistics.median(rates['hooked']):.0f}/s; ratio with/without "
          f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")
    per_publish_ns = 1e9 / statistics.median(rates["bare"])
    print(f"   the hook's own cost (1.) is {HOOK_NS['publish_span'] / per_publish_ns:.2%} of one "
          f"publish ({per_publish_ns / 1000:.0f} us)")
    redis.Redis.from_url(url).delete(f"{prefix}events")


def deliver(cluster: Cluster, count: int) -> None:
    rc = cluster.start_receiver(delay_ms=0)
    prefix = cluster.prefix("trc")
    factory = cluster.recnotify(prefix, "destinations:\n" + cluster.destination(
        "fast", "route:fast", rc.url("fast", "d")))
    runtime = Runtime(factory.settings)
    deliverer = runtime.deliverer
    client = redis.Redis.from_url(cluster.redis_url)

    def events(n: int) -> list[str]:
        ids = []
        for i in range(n):
            event = validate_event({"type": "RECORDING_STARTED_EVENT", "route": "fast",
                                    "params": {"UCID": str(i)}})
            client.set(factory.settings.keys.event(event.id), event.to_json())
            ids.append(event.id)
        return ids

    for event_id in events(50):  # warm: connections, caches
        deliverer.run(event_id, "fast")
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    on = provider.get_tracer("bench")
    rates: dict[str, list[float]] = {"off": [], "on": []}
    ratios = []
    for round_ in range(ROUNDS):
        for name in ("off", "on") if round_ % 2 else ("on", "off"):
            ids = events(count)
            tracing._tracer = on if name == "on" else None
            start = time.perf_counter()
            for event_id in ids:
                deliverer.run(event_id, "fast")
            rates[name].append(count / (time.perf_counter() - start))
            tracing._tracer = None
            memory.clear()
        ratios.append(rates["on"][-1] / rates["off"][-1])
    print(f"3. Deliverer.run in-process, {ROUNDS} interleaved rounds of {count}: tracing off "
          f"{statistics.median(rates['off']):.0f}/s, on {statistics.median(rates['on']):.0f}/s;"
          f" ratio on/off {statistics.median(ratios):.3f} (min {min(ratios):.3f}, "
          f"max {max(ratios):.3f})")
    per_deliver_ns = 1e9 / statistics.median(rates["off"])
    print(f"   off, the attempt hook's own cost (1.) is "
          f"{HOOK_NS['attempt_span + done'] / per_deliver_ns:.2%} of one delivery "
          f"({per_deliver_ns / 1000:.0f} us)")


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    hooks()
    cluster = Cluster("redis://127.0.0.1:6379/0")
    try:
        publish(cluster.redis_url, cluster.prefix("trp"), count)
        deliver(cluster, max(100, count // 5))
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
