"""The fault harness: real workers, a real Redis, real receivers, real faults.

    python -m tests.faults [--quick | --full] [--events N] [--keep]

Starts its own ``redis-server`` (AOF on, so it can restart it), ``recnotify
worker`` processes and an HTTP receiver, publishes events while it injects
faults, then checks from the receiver's side that every accepted event reached
every matching healthy destination, and that every notification to a dead
destination is a dead letter in the store. The last line printed is the figure:

    sent=N delivered=N dead_lettered=N lost=N duplicated=N duplicated_same_id=N healthy_p99_ms=X

- ``sent``: notifications accepted (events accepted by a publish call x matching
  destinations); ``delivered``: (event, healthy destination) pairs received;
  ``dead_lettered``: (event, dead destination) pairs found as dead letters;
  ``lost``: pairs that are neither; ``duplicated``: pairs received more than
  once, ``duplicated_same_id``: those whose copies all carry the notification's
  own ``webhook-id``; ``healthy_p99_ms``: 99th percentile of publish -> first
  receipt over the healthy pairs (faults included).
- Exit code 1 when ``lost > 0`` or a duplicate carries another id.

``--quick`` (the CI run, about 1,000 notifications): 2 workers, 4 healthy and 1
dead destination (connection refused); one worker SIGKILL, one consumer killed
right after a burst was published (entries read but not acknowledged), one
Redis restart. ``--full``: 10,000 notifications, 8 healthy and 2 dead
destinations (refused, and HTTP 503), 5 worker SIGKILLs, 1 consumer kill and
1 Redis restart with AOF; before the faults it measures the healthy
destinations' throughput without and with the dead ones (same run, 250 events
each, 2,000 healthy notifications) and prints both. 10,000 notifications in all.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen
from urllib.parse import parse_qs, urlsplit

from producer import Publisher
from producer.errors import PublishError
from tests.helpers import WorkerFactory
from tests.receiver import Receiver
from workers.http.request import notification_id
from workers.ops.embedded import EmbeddedRedis, free_port

PREFIX = "faults:"
HEALTHY_RETRY = {"max_attempts": 8, "backoff_s": 0.2, "backoff_max_s": 2}
DEAD_RETRY = {"max_attempts": 3, "backoff_s": 0.2, "backoff_max_s": 0.5}
WORKER_ENV = {"RECNOTIFY_CLAIM_IDLE_S": "3", "RECNOTIFY_WATCHDOG_S": "10",
              "RECNOTIFY_MAX_COUNTDOWN_S": "2", "RECNOTIFY_LOG_LEVEL": "WARNING"}


@dataclass(frozen=True)
class Plan:
    events: int  # events published while faults are injected
    healthy: int
    dead: int
    workers: int
    worker_kills: int
    consumer_kills: int
    redis_restarts: int
    throughput_events: int  # per throughput phase; 0 = no throughput phases
    rate_per_s: float  # publish rate during the fault phase
    settle_s: float  # how long to wait for the last notifications


QUICK = Plan(events=200, healthy=4, dead=1, workers=2, worker_kills=1, consumer_kills=1,
             redis_restarts=1, throughput_events=0, rate_per_s=20, settle_s=60)
FULL = Plan(events=550, healthy=8, dead=2, workers=3, worker_kills=5, consumer_kills=1,
            redis_restarts=1, throughput_events=250, rate_per_s=20, settle_s=180)


@dataclass
class Run:
    plan: Plan
    factory: WorkerFactory
    receiver: Receiver
    redis: EmbeddedRedis
    healthy: list[str]
    dead: list[str]
    published: dict[str, tuple[float, list[str]]] = field(default_factory=dict)
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    live: list[Popen[bytes]] = field(default_factory=list)

    # -- publishing ----------------------------------------------------------------------
    def publish(self, publisher: Publisher, route: str, n: int, rate_per_s: float | None
                ) -> list[str]:
        """Publish ``n`` events on ``route`` (paced when ``rate_per_s``); return accepted ids."""
        dests = self.healthy + (self.dead if route == "mixed" else [])
        ids: list[str] = []
        started = time.monotonic()
        for i in range(n):
            if rate_per_s:
                delay = started + i / rate_per_s - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            try:
                at = time.time()
                eid = publisher.publish("SEGMENT_STARTED_EVENT", route=route,
                                        params={"UCID": f"u{i}-{at}", "SEQUENCE": i})
            except PublishError as exc:
                print(f"  publish refused (not accepted, not counted): {exc}", flush=True)
                self.refused += 1
                continue
            with self.lock:
                self.published[eid] = (at, dests)
            ids.append(eid)
        return ids

    # -- faults --------------------------------------------------------------------------
    def kill_worker(self, why: str) -> None:
        victim = self.live.pop(0)
        self.factory.kill(victim)
        print(f"  SIGKILL worker pid {victim.pid} ({why})", flush=True)
        self.live.append(self.factory.start(node=f"n{len(self.factory.procs)}", wait=False,
                                            **WORKER_ENV))

    def restart_redis(self) -> None:
        self.redis.stop()
        self.redis.start()
        print(f"  Redis restarted on port {self.redis.port} (AOF)", flush=True)

    # -- checking ------------------------------------------------------------------------
    def received(self) -> dict[tuple[str, str], list[tuple[float, str]]]:
        got: dict[tuple[str, str], list[tuple[float, str]]] = defaultdict(list)
        for r in self.receiver.received():
            eid = parse_qs(urlsplit(r.target).query).get("e", [""])[0]
            got[(eid, urlsplit(r.target).path.strip("/"))].append(
                (r.at, r.header("webhook-id") or ""))
        return got

    def dead_letters(self) -> set[tuple[str, str]]:
        try:
            letters = self.factory.store.list_dead_letters()
        except Exception:
            return set()
        return {(d["event_id"], d["destination"]) for d in letters}

    def missing(self, ids: list[str] | None = None) -> list[tuple[str, str]]:
        got, dead = self.received(), self.dead_letters()
        with self.lock:
            items = [(e, self.published[e]) for e in (ids or list(self.published))]
        out = []
        for eid, (_at, dests) in items:
            for dest in dests:
                pair = (eid, dest)
                done = pair in dead if dest in self.dead else pair in got
                if not done:
                    out.append(pair)
        return out

    def wait_complete(self, ids: list[str] | None, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.missing(ids) and time.monotonic() < deadline:
            time.sleep(1.0)


def destinations_yaml(receiver: Receiver, healthy: list[str], dead: list[str]) -> str:
    lines = ["destinations:"]
    refused_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    for name in healthy:
        lines += [f"  - name: {name}", "    events: all", "    scope: global",
                  f"    url: '{receiver.url('/' + name)}'", "    params: 'e=%EVENTID%'",
                  "    timeout_s: 5", f"    retry: {HEALTHY_RETRY}"]
    for i, name in enumerate(dead):
        url = f"{refused_url}/{name}" if i % 2 == 0 else receiver.url("/" + name)
        receiver.script("/" + name, [503])
        lines += [f"  - name: {name}", "    events: all", "    scope: 'route:mixed'",
                  f"    url: '{url}'", "    params: 'e=%EVENTID%'", "    timeout_s: 2",
                  f"    retry: {DEAD_RETRY}", "    circuit: {failures: 3, reset_s: 2}"]
    return "\n".join(lines) + "\n"


def throughput(run: Run, publisher: Publisher, route: str) -> float:
    """Healthy notifications per second for one burst of events on ``route``."""
    started = time.time()
    ids = run.publish(publisher, route, run.plan.throughput_events, None)
    run.wait_complete(ids, run.plan.settle_s)
    got = run.received()
    last = max((min(t for t, _ in got[(e, d)]) for e in ids for d in run.healthy
                if (e, d) in got), default=started)
    return len(ids) * len(run.healthy) / max(last - started, 1e-3)


def inject_faults(run: Run, publisher: Publisher) -> None:
    plan = run.plan
    # spread the faults evenly over the publishing: worker kills with the consumer kill
    # after the first one and the Redis restart(s) in the middle
    order = ["worker"] * plan.worker_kills
    order[1:1] = ["consumer"] * plan.consumer_kills
    middle = len(order) // 2 + 1
    order[middle:middle] = ["redis"] * plan.redis_restarts
    step = plan.events // (len(order) + 1)
    for i, kind in enumerate(order):
        run.publish(publisher, "mixed", step, plan.rate_per_s)
        if kind == "worker":
            run.kill_worker(f"fault {i + 1}/{len(order)}, mid-delivery")
        elif kind == "consumer":
            run.publish(publisher, "mixed", 30, None)  # a burst, then kill at once
            run.kill_worker("consumer killed between read and acknowledge")
        else:
            run.restart_redis()
    run.publish(publisher, "mixed", plan.events - step * len(order) - 30 * plan.consumer_kills,
                plan.rate_per_s)


def figures(run: Run) -> tuple[str, bool]:
    got, dead = run.received(), run.dead_letters()
    sent = delivered = dead_lettered = lost = duplicated = same_id = 0
    latencies: list[float] = []
    for eid, (at, dests) in run.published.items():
        for dest in dests:
            sent += 1
            pair = (eid, dest)
            if dest in run.dead:
                dead_lettered += pair in dead
                lost += pair not in dead
                continue
            copies = got.get(pair, [])
            if not copies:
                lost += 1
                continue
            delivered += 1
            latencies.append((min(t for t, _ in copies) - at) * 1000)
            if len(copies) > 1:
                duplicated += 1
                same_id += all(i == notification_id(eid, dest) for _, i in copies)
    latencies.sort()
    p99 = latencies[max(0, math.ceil(len(latencies) * 0.99) - 1)] if latencies else 0.0
    line = (f"sent={sent} delivered={delivered} dead_lettered={dead_lettered} lost={lost} "
            f"duplicated={duplicated} duplicated_same_id={same_id} healthy_p99_ms={p99:.0f}")
    return line, lost == 0 and duplicated == same_id


@contextmanager
def environment(plan: Plan, keep: bool) -> Iterator[Run]:
    tmp = Path(tempfile.mkdtemp(prefix="recnotify-faults-"))
    redis_server = EmbeddedRedis(tmp / "redis").start()
    receiver = Receiver().__enter__()
    factory = WorkerFactory(redis_url=redis_server.url, key_prefix=PREFIX, tmp_path=tmp)
    healthy = [f"h{i}" for i in range(plan.healthy)]
    dead = [f"dead{i}" for i in range(plan.dead)]
    factory.configure(destinations_yaml(receiver, healthy, dead))
    run = Run(plan, factory, receiver, redis_server, healthy, dead)
    try:
        run.live = [factory.start(node=f"n{i}", wait=False, **WORKER_ENV)
                    for i in range(plan.workers)]
        for i, proc in enumerate(run.live):
            factory.wait_ready(proc, f"{os.uname().nodename}-n{i}", timeout_s=60)
        yield run
    finally:
        factory.stop_all()
        receiver.__exit__(None, None, None)
        redis_server.stop()
        if keep:
            print(f"  kept: {tmp} (worker logs, Redis data, database)", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.faults", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="the CI run (default)")
    size.add_argument("--full", action="store_true", help="10,000 notifications, 5 kills")
    parser.add_argument("--events", type=int, help="events in the fault phase (override)")
    parser.add_argument("--keep", action="store_true", help="keep logs and data afterwards")
    args = parser.parse_args(argv)
    plan = FULL if args.full else QUICK
    if args.events:
        plan = Plan(**{**plan.__dict__, "events": args.events})
    with environment(plan, args.keep) as run:
        publisher = Publisher(run.redis.url, key_prefix=PREFIX)
        if plan.throughput_events:
            clean = throughput(run, publisher, "clean")
            mixed = throughput(run, publisher, "mixed")
            print(f"healthy throughput: without dead destinations {clean:.0f}/s, with them "
                  f"{mixed:.0f}/s ({mixed / clean:.0%})", flush=True)
        inject_faults(run, publisher)
        run.wait_complete(None, plan.settle_s)
        for proc in run.live:
            if proc.poll() is not None:
                print(f"  worker pid {proc.pid} EXITED by itself (code {proc.returncode}); "
                      f"log: {proc.log_path}", flush=True)  # type: ignore[attr-defined]
        missing = run.missing()
        for eid, dest in missing[:10]:
            state = run.factory.redis.hgetall(
                run.factory.settings.keys.notification(notification_id(eid, dest)))
            print(f"  lost: event {eid} -> {dest}; state in Redis: {state}", flush=True)
        line, ok = figures(run)
    print(line, flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
