"""A ``recnotify worker`` with configuration changes, to measure what they would buy.

    python -m bench.variant_worker VARIANT[+VARIANT...] CONCURRENCY NODE_NAME

(environment as for a worker). None of these is the product; each is an experiment
for the profile note (bench/profile.md):

- ``stock``: exactly ``recnotify worker``;
- ``noevents``: no Celery task events (``task-sent/received/started/succeeded``): Flower
  would show workers but not tasks;
- ``quiet``: log level WARNING (no INFO line per notification and per event);
- ``apply_async``: the fan-out enqueue as before workers.fastpath (one ``apply_async``,
  hence one round trip, per task);
- ``fewer_rtt``: 3 of the 6 Redis round trips of a successful delivery removed, the way
  folding them into the existing pipelines would: the circuit admit/success scripts
  skipped (a closed circuit assumed: NOT safe, an estimate only) and the lock released
  by one compare-and-delete script instead of GET then DEL.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from celery import Celery

from workers import circuit, deliver, service
from workers.app import DELIVER_TASK, create_app
from workers.logs import setup_logging
from workers.settings import Settings

VARIANTS = ("stock", "noevents", "quiet", "apply_async", "fewer_rtt")
_COMPARE_AND_DELETE = ("if redis.call('get', KEYS[1]) == ARGV[1] then "
                       "return redis.call('del', KEYS[1]) end return 0")


def apply_async_enqueue(app: Celery) -> Callable[[Sequence[tuple[str, str]]], None]:
    """The enqueue recnotify used before workers.fastpath."""
    task = app.tasks[DELIVER_TASK]

    def enqueue(pairs: Sequence[tuple[str, str]]) -> None:
        with app.producer_or_acquire() as producer:
            for event_id, destination in pairs:
                task.apply_async((event_id, destination), producer=producer)

    return enqueue


def fewer_round_trips() -> None:
    def admit(self: Any, destination: str, reset_s: float) -> circuit.Admission:
        return circuit.Admission(circuit.Verdict.CLOSED)

    def release(self: Any, nid: str, token: str) -> None:
        script = getattr(self, "_bench_cad", None)
        if script is None:
            script = self._bench_cad = self.redis.register_script(_COMPARE_AND_DELETE)
        script(keys=[self.keys.lock(nid)], args=[token])

    circuit.CircuitBreaker.admit = admit  # type: ignore[method-assign]
    circuit.CircuitBreaker.record_success = lambda self, destination: None  # type: ignore[method-assign]
    deliver.Deliverer._release = release  # type: ignore[method-assign]


def main() -> None:
    variants, concurrency, node = set(sys.argv[1].split("+")), int(sys.argv[2]), sys.argv[3]
    unknown = variants - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variant(s) {sorted(unknown)} (known: {', '.join(VARIANTS)})")
    settings = replace(Settings.from_env(), concurrency=concurrency, node_name=node)
    if "quiet" in variants:
        settings = replace(settings, log_level="WARNING")
    setup_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    events = ["--task-events"]
    if "noevents" in variants:
        app.conf.worker_send_task_events = False
        app.conf.task_send_sent_event = False
        events = []
    if "apply_async" in variants:
        service.make_enqueue = apply_async_enqueue
    if "fewer_rtt" in variants:
        fewer_round_trips()
    service.install(app)
    logging.getLogger("recnotify.bench").warning("variant %s", "+".join(sorted(variants)))
    app.worker_main(["worker", "--pool", "threads", "--concurrency", str(concurrency),
                     "--queues", "deliver", "--hostname", f"recnotify@{node}", *events,
                     "--without-gossip", "--without-mingle", "--loglevel", settings.log_level])


if __name__ == "__main__":
    main()
