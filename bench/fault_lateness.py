"""Lateness per single fault with the workers' DEFAULT timings (issue 12 item 3, SPEC 6).

    python -m bench.fault_lateness                 # all four faults, about 6 minutes
    python -m bench.fault_lateness --only kombu    # one of: kill, consumer, redis, kombu

For each fault, in a fresh environment (its own ``redis-server`` with AOF, ``recnotify
worker`` processes with the default watchdog, claim idle and max countdown, a
real receiver), the time from the fault to the next attempt at the receiver of the
notification the fault hit:

- ``kill``: a worker SIGKILLed while its request is at the receiver (the receiver takes
  3 s; the destination's ``timeout_s`` is 10); a fresh worker is started at once, as a
  supervisor would;
- ``consumer``: a stream consumer that read an entry and died before acknowledging it
  (this harness reads the entry under a consumer name of its own while no worker runs,
  and never acknowledges it; then a worker starts);
- ``redis``: a Redis restart (AOF on) right after 300 events were published at 30/s to
  a receiver that takes 0.5 s (2 workers x 4: 16/s, so about 140 are queued and 8 in
  flight at the restart); the figure is the longest wait, over the notifications not
  yet at the receiver at the restart, from the restart to their first request (it
  includes draining that queue, about 10 s);
- ``kombu``: a message kombu popped and lost (this harness takes a delivery message from
  the queue list ``<prefix>deliver`` right after the consumer dispatched it).

Prints a table, one line per fault; the promise is <= 120 s each. Exit code 1 when one
is over or never arrives.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.cluster import DEFAULT_TIMINGS
from producer import Publisher
from producer.errors import PublishError
from tests.helpers import WorkerFactory
from tests.receiver import Receiver
from workers.http.request import notification_id
from workers.ops.embedded import EmbeddedRedis

PREFIX = "lat:"
BOUND_S = 120.0
WAIT_S = 300.0  # give up on a next attempt after this long
DEFAULT_ENV = {**DEFAULT_TIMINGS, "RECNOTIFY_LOG_LEVEL": "WARNING"}


@dataclass
class Env:
    factory: WorkerFactory
    receiver: Receiver
    redis: EmbeddedRedis
    tmp: Path

    def start_worker(self, name: str) -> object:
        proc = self.factory.start(node=name, concurrency=4, wait=False)
        self.factory.wait_ready(proc, f"{os.uname().nodename}-{name}", timeout_s=60)
        return proc

    def publish(self, n: int = 0) -> str:
        pub = Publisher(self.redis.url, key_prefix=PREFIX)
        for _ in range(50):
            try:
                return pub.publish("RECORDING_STARTED_EVENT", params={"UCID": f"lat-{n}"})
            except PublishError:
                time.sleep(0.2)
        raise RuntimeError("publish refused for 10 s")

    def requests_for(self, eid: str) -> list[float]:
        wid = notification_id(eid, "lat")
        return [r.at for r in self.receiver.received() if r.header("webhook-id") == wid]

    def next_after(self, eid: str, after: float, timeout_s: float = WAIT_S) -> float | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            later = [t for t in self.requests_for(eid) if t > after]
            if later:
                return min(later) - after
            time.sleep(0.2)
        return None


@contextmanager
def environment(delay_s: float, timeout_s: float) -> Iterator[Env]:
    tmp = Path(tempfile.mkdtemp(prefix="recnotify-lat-"))
    server = EmbeddedRedis(tmp / "redis").start()
    receiver = Receiver(delay_s=delay_s).__enter__()
    factory = WorkerFactory(redis_url=server.url, key_prefix=PREFIX, tmp_path=tmp,
                            extra_env=DEFAULT_ENV)
    factory.configure("destinations:\n  - name: lat\n    events: all\n    scope: global\n"
                      f"    url: '{receiver.url('/lat')}'\n    timeout_s: {timeout_s}\n")
    try:
        yield Env(factory, receiver, server, tmp)
    finally:
        factory.stop_all()
        receiver.__exit__(None, None, None)
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def wait_for_request(env: Env, eid: str, timeout_s: float = 30) -> float:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = env.requests_for(eid)
        if got:
            return got[0]
        time.sleep(0.02)
    raise RuntimeError(f"event {eid} never reached the receiver")


def fault_kill() -> tuple[float | None, str]:
    with environment(delay_s=3.0, timeout_s=10) as env:
        victim = env.start_worker("k0")
        eid = env.publish()
        wait_for_request(env, eid)
        env.factory.kill(victim)  # type: ignore[arg-type]
        fault_at = time.time()
        env.start_worker("k1")
        return env.next_after(eid, fault_at), "SIGKILL while the request was at the receiver"


def fault_consumer() -> tuple[float | None, str]:
    with environment(delay_s=0.0, timeout_s=10) as env:
        first = env.start_worker("c0")  # creates the consumer group, then stops cleanly
        first.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
        first.wait(30)  # type: ignore[attr-defined]
        eid = env.publish()
        keys = env.factory.settings.keys
        got: Any = env.factory.redis.xreadgroup(
            keys.group, "killed-consumer", {keys.events: ">"}, count=10)
        fault_at = time.time()  # read, and its reader is gone: never acknowledged
        read = sum(len(entries) for _stream, entries in got or [])
        if not read:
            return None, "the harness could not read the entry"
        env.start_worker("c1")
        return env.next_after(eid, fault_at), f"{read} entry read, never acknowledged"


def fault_redis() -> tuple[float | None, str]:
    with environment(delay_s=0.5, timeout_s=10) as env:
        env.start_worker("r0")
        env.start_worker("r1")
        published: list[tuple[float, str]] = []
        restart_at = 0.0
        for i in range(300):  # 10 s at 30/s (capacity 16/s: a queue builds), then restart
            published.append((time.time(), env.publish(i)))
            time.sleep(1 / 30)
        restart_at = time.time()
        env.redis.stop()
        env.redis.start()
        pending = [eid for at, eid in published
                   if at < restart_at and not [t for t in env.requests_for(eid)
                                               if t <= restart_at]]
        worst = 0.0
        deadline = time.monotonic() + WAIT_S
        for eid in pending:
            wait = env.next_after(eid, restart_at, max(1.0, deadline - time.monotonic()))
            if wait is None:
                return None, f"event {eid} never arrived ({len(pending)} pending at restart)"
            worst = max(worst, wait)
        return worst, f"worst of {len(pending)} notifications pending at the restart"


def fault_kombu() -> tuple[float | None, str]:
    with environment(delay_s=0.0, timeout_s=10) as env:
        env.start_worker("q0")
        stolen: list[tuple[float, str]] = []
        stop = threading.Event()
        client = env.factory.redis
        queue = env.factory.settings.keys.deliver_queue

        def thief() -> None:
            while not stop.is_set() and not stolen:
                reply = client.brpop([queue], timeout=1)
                if reply is not None:
                    headers = json.loads(reply[1])["headers"]
                    eid = ast.literal_eval(headers["argsrepr"])[0]
                    stolen.append((time.time(), str(eid)))

        thread = threading.Thread(target=thief, daemon=True)
        thread.start()
        deadline = time.monotonic() + 60
        n = 0
        while not stolen and time.monotonic() < deadline:
            env.publish(n)
            n += 1
            time.sleep(0.2)
        stop.set()
        thread.join(5)
        if not stolen:
            return None, "no message could be taken from the queue"
        fault_at, eid = stolen[0]
        if [t for t in env.requests_for(eid) if t <= fault_at]:
            return None, "the taken message had already been delivered"
        return env.next_after(eid, fault_at), f"1 message taken after {n} published"


FAULTS: dict[str, tuple[str, Callable[[], tuple[float | None, str]]]] = {
    "kill": ("worker SIGKILL mid-attempt", fault_kill),
    "consumer": ("consumer killed between read and ack", fault_consumer),
    "redis": ("Redis restart (AOF on)", fault_redis),
    "kombu": ("kombu loses a popped message", fault_kombu),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fault_lateness", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=sorted(FAULTS), action="append")
    args = parser.parse_args(argv)
    rows: list[tuple[str, float | None, str]] = []
    for key in args.only or list(FAULTS):
        title, run = FAULTS[key]
        print(f"  measuring: {title} ...", flush=True)
        lateness, note = run()
        rows.append((title, lateness, note))
        print(f"  {title}: {lateness if lateness is None else round(lateness, 1)} s ({note})",
              flush=True)
    print(f"{'fault':<40} {'fault -> next attempt (s)':>26}  bound 120 s")
    ok = True
    for title, lateness, note in rows:
        good = lateness is not None and lateness <= BOUND_S
        ok = ok and good
        shown = "never" if lateness is None else f"{lateness:.1f}"
        print(f"{title:<40} {shown:>26}  {'ok' if good else 'OVER'}   {note}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
