"""What runs beside the Celery worker in every ``recnotify worker`` process.

A Celery bootstep starts, with the worker, the background loops of this module
and stops them on shutdown:

- the stream consumer (read, match, fan out, acknowledge, claim stale entries);
- the schedule mover (due long-wait retries back onto the delivery queue), and the
  parking sweep (notifications parked by an open circuit: released or dead-lettered);
- housekeeping: destination refresh (every second), the per-attempt counters sent
  to Redis (workers.state.counters.Tally), record flushing to the database, retention
  purges, and a heartbeat for ``recnotify check``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

from celery import Celery, bootsteps

from workers.state.counters import HEARTBEAT_TTL_S, heartbeat_index
from workers.state.records import Flusher
from workers.state.schedule import Schedule
from workers.stream.consumer import StreamConsumer
from workers.taskqueue.enqueue import make_enqueue
from workers.taskqueue.runtime import Runtime, get_runtime

log = logging.getLogger("recnotify.service")



class Service:
    """The background loops of one worker process."""

    def __init__(self, app: Celery, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime
        self.settings = runtime.settings
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        enqueue = make_enqueue(app)
        self.enqueue = enqueue
        self.consumer = StreamConsumer(self.settings, runtime.redis, runtime.config, enqueue,
                                       ordering=runtime.ordering,
                                       load_event=runtime.store.get_event_json,
                                       known_events=runtime.store.events_json)
        self.schedule = Schedule(runtime.redis, self.settings.keys,
                                 watchdog_s=self.settings.watchdog_s)
        self.flusher = Flusher.of(runtime.redis, self.settings.keys, runtime.store,
                                  window_s=self.settings.dedupe_window_s)
        self._next_purge_s = 0.0
        self._next_stale_check_s = 0.0

    def start(self) -> None:
        self.wait_for_config()
        self.consumer.ensure_group()
        for name, target in (
            ("recnotify-consumer", self.consumer.run),
            ("recnotify-scheduler", self._scheduler_loop),
            ("recnotify-housekeeping", self._housekeeping_loop),
        ):
            thread = threading.Thread(
                target=target, args=(self.stop_event,), name=name, daemon=True
            )
            thread.start()
            self.threads.append(thread)
        log.info(
            "recnotify worker %s consuming %s", self.settings.node_name, self.settings.keys.events
        )
        if self.settings.dedupe_window_s < 2 * self.settings.watchdog_s:
            log.warning("RECNOTIFY_DEDUPE_WINDOW_S (%.0f s) is shorter than twice "
                        "RECNOTIFY_WATCHDOG_S (%.0f s): a copy the watchdog enqueues that runs "
                        "after the window may send its notification again; make the window "
                        "longer", self.settings.dedupe_window_s, self.settings.watchdog_s)

    def wait_for_config(self) -> None:
        """Do not consume before the destinations are known (else events would match none)."""
        delay = 0.5
        while not self.runtime.config.loaded.is_set():
            if self.runtime.config.refresh():
                break
            log.error("waiting for the destination database before consuming events")
            time.sleep(delay)
            delay = min(delay * 2, 10)

    def stop(self) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(timeout=5)
        try:
            self.runtime.tally.flush()  # tasks that end after this: at exit (atexit)
            self.flusher.flush()
            self.runtime.redis.delete(self.settings.keys.heartbeat(self.settings.node_name))
            self.runtime.redis.zrem(heartbeat_index(self.settings.keys.prefix),
                                    self.settings.node_name)
        except Exception:
            log.warning("final flush at shutdown failed; records stay buffered in Redis")

    @property
    def stale_head_s(self) -> float:
        """When an ordered recording's released head is sent again (the second line behind
        the watchdog, for a head whose task and watchdog entry were both lost): after the
        watchdog had its chance twice (2 x 60 s + 20 s by default; at least 40 s, longer
        than a countdown, at most RECNOTIFY_MAX_COUNTDOWN_S (30 s), plus its attempt)."""
        return 2 * self.settings.watchdog_s + 20

    def _scheduler_loop(self, stop: threading.Event) -> None:
        def enqueue_one(event_id: str, destination: str) -> None:
            # the batch enqueue: its enqueued-at header and watchdog entry go with it
            self.enqueue([(event_id, destination)])

        while not stop.wait(0.5):
            try:
                self.consumer.parking.sweep(self.runtime.config)
                self.schedule.move_due(self.enqueue)
                self.schedule.check_watchdog(self.enqueue)
                self.consumer.ordering.sweep(self.enqueue)
                if time.monotonic() >= self._next_stale_check_s:
                    self._next_stale_check_s = time.monotonic() + 10
                    self.consumer.ordering.resend_stale(
                        enqueue_one, stale_after_s=self.stale_head_s)
            except Exception as exc:
                log.error("schedule mover: %s", exc)
                stop.wait(2)

    def _housekeeping_loop(self, stop: threading.Event) -> None:
        while True:
            for job in (
                self.runtime.config.refresh,
                self._heartbeat,
                self.flusher.flush,
                # after the records: an attempt is counted before its record is pushed, so
                # once this loop has flushed a record, its counts are sent too
                self.runtime.tally.flush,
                self._purge,
            ):
                try:
                    job()
                except Exception as exc:
                    log.error("housekeeping (%s): %s", getattr(job, "__name__", job), exc)
            if stop.wait(0.5):
                return

    def _heartbeat(self) -> None:
        beat: dict[str, Any] = {
            "node": self.settings.node_name,
            "at": time.time(),
            "consumer_loop_at": self.consumer.last_loop_s,
            "config_version": self.runtime.config.version,
            "dispatched": self.consumer.dispatched,
        }
        pipe = self.runtime.redis.pipeline(transaction=False)
        pipe.set(self.settings.keys.heartbeat(self.settings.node_name), json.dumps(beat),
                 ex=HEARTBEAT_TTL_S)
        # /metrics counts live workers here (one ZCOUNT, no SCAN); stale nodes age out
        index = heartbeat_index(self.settings.keys.prefix)
        pipe.zadd(index, {self.settings.node_name: beat["at"]})
        pipe.zremrangebyscore(index, "-inf", beat["at"] - 24 * 3600)
        pipe.execute()

    def _purge(self) -> None:
        if time.monotonic() < self._next_purge_s:
            return
        self._next_purge_s = time.monotonic() + 3600
        store = self.runtime.store
        removed = store.purge_records_older_than(self.settings.record_retention_days)
        if removed:
            log.info("retention: removed %d attempt records/dead letters", removed)
        removed = store.purge_events_older_than(self.settings.event_retention_days)
        if removed:
            log.info("retention: removed %d events", removed)


class ServiceStep(bootsteps.StartStopStep):  # type: ignore[misc]
    """Starts the :class:`Service` with the Celery worker, stops it before the pool."""

    requires = {"celery.worker.components:Pool"}

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.service: Service | None = None

    def start(self, worker: Any) -> None:
        app = worker.app
        self.service = Service(app, get_runtime(app.recnotify_settings))
        self.service.start()

    def stop(self, worker: Any) -> None:
        if self.service is not None:
            self.service.stop()


def install(app: Celery) -> None:
    app.steps["worker"].add(ServiceStep)


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)
