"""Watchdog copies under a long backlog (issue 12 item 3), with the workers' default timings.

    python -m bench.watchdog_backlog --duration-s 600      # the 10-minute backlog
    python -m bench.watchdog_backlog --duration-s 180      # 3 minutes

Starts its own ``redis-server``, ``--workers`` ``recnotify worker`` processes (default
watchdog, claim idle and max countdown: the watchdog's real timings) and a
receiver that takes ``--latency-s`` per request, then keeps the delivery queue deep for
``--duration-s``: every 0.5 s it publishes enough events that the queue holds
``--queue-wait-s`` of work at the measured delivery rate (the oldest queued message is
older than the watchdog's 60 s for the whole window). Then it stops publishing and lets
the queue drain.

Counted from the receiver's side: ``receiver_copies`` (requests whose ``webhook-id`` was
seen before), ``copies_other_id`` (requests whose ``webhook-id`` is not the notification's
own id; must be 0), and from Redis the watchdog metric (``<prefix>metrics:watchdog``
field ``copied``). ``queue_wait_s_*`` is the age of the oldest queued message, sampled
every 0.5 s during the window. The last line printed is the figure:

    backlog_s=N published=N delivered=N lost=N receiver_copies=N watchdog_copied=N
    copies_other_id=N queue_wait_s_median=X queue_wait_s_max=X   (one line)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.cluster import DEFAULT_TIMINGS
from producer import Publisher
from tests.helpers import WorkerFactory
from tests.receiver import Receiver
from workers.config.settings import (
    DEFAULT_WATCHDOG_S,
)
from workers.http.request import notification_id
from workers.ops.embedded import EmbeddedRedis
from workers.state.schedule import ENQUEUED_AT_HEADER

PREFIX = "wdb:"
DEFAULT_ENV = {**DEFAULT_TIMINGS, "RECNOTIFY_LOG_LEVEL": "WARNING"}


def oldest_queued_age_s(factory: WorkerFactory) -> float | None:
    raw = factory.redis.lindex(factory.settings.keys.deliver_queue, -1)
    if raw is None:
        return None
    try:
        return time.time() - float(json.loads(raw)["headers"][ENQUEUED_AT_HEADER])
    except (ValueError, KeyError, TypeError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.watchdog_backlog", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration-s", type=float, default=180.0)
    parser.add_argument("--latency-s", type=float, default=0.05)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--queue-wait-s", type=float, default=DEFAULT_WATCHDOG_S * 1.5)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="recnotify-wdb-"))
    server = EmbeddedRedis(tmp / "redis").start()
    receiver = Receiver(delay_s=args.latency_s).__enter__()
    factory = WorkerFactory(redis_url=server.url, key_prefix=PREFIX, tmp_path=tmp,
                            extra_env=DEFAULT_ENV)
    published: list[str] = []
    waits: list[float] = []
    try:
        factory.configure("destinations:\n  - name: backlog\n    events: all\n"
                          "    scope: global\n"
                          f"    url: '{receiver.url('/backlog')}'\n"
                          "    params: 'e=%EVENTID%'\n")
        procs = [factory.start(node=f"wdb{i}", concurrency=args.concurrency, wait=False)
                 for i in range(args.workers)]
        for i, proc in enumerate(procs):
            factory.wait_ready(proc, f"{os.uname().nodename}-wdb{i}", timeout_s=60)
        publisher = Publisher(server.url, key_prefix=PREFIX)
        queue = factory.settings.keys.deliver_queue
        started = time.monotonic()
        rate_per_s = 20.0 * args.workers * args.concurrency  # a first guess, then measured
        last_report = started
        while time.monotonic() - started < args.duration_s:
            elapsed = time.monotonic() - started
            delivered = len(receiver.received())
            if elapsed > 10 and delivered:
                rate_per_s = delivered / elapsed
            depth = int(factory.redis.llen(queue))
            want = int(rate_per_s * args.queue_wait_s) - depth
            for i in range(max(0, min(want, 2000))):
                published.append(publisher.publish("RECORDING_STARTED_EVENT",
                                                   params={"UCID": f"b{len(published)}-{i}"}))
            age = oldest_queued_age_s(factory)
            if age is not None and elapsed > args.queue_wait_s:
                waits.append(age)
            if time.monotonic() - last_report > 30:
                last_report = time.monotonic()
                print(f"  t={elapsed:.0f} s published={len(published)} delivered={delivered} "
                      f"queue={depth} oldest_queued_s={age if age is None else round(age)} "
                      f"rate={rate_per_s:.0f}/s", flush=True)
            time.sleep(0.5)
        print(f"  publishing stopped; draining {len(published)} notifications", flush=True)
        ids = {notification_id(e, "backlog"): e for e in published}
        drain_deadline = time.monotonic() + args.queue_wait_s * 2 + 180
        while time.monotonic() < drain_deadline:
            seen = {r.header("webhook-id") for r in receiver.received()}
            if len(seen & ids.keys()) == len(ids):
                break
            time.sleep(2.0)
        time.sleep(5.0)  # a copy enqueued at the very end still arrives
        got = receiver.received()
        seen_ids: set[str] = set()
        copies = other = 0
        for r in got:
            wid = r.header("webhook-id") or ""
            if wid in seen_ids:
                copies += 1
            seen_ids.add(wid)
            eid = r.query.get("e", [""])[0]
            other += wid != notification_id(eid, "backlog")
        copied = int(factory.redis.hget(factory.settings.keys.metric("watchdog"), "copied")
                     or 0)
        lost = len(ids.keys() - seen_ids)
        median = statistics.median(waits) if waits else 0.0
        print(f"backlog_s={args.duration_s:.0f} published={len(published)} "
              f"delivered={len(ids) - lost} lost={lost} receiver_copies={copies} "
              f"watchdog_copied={copied} copies_other_id={other} "
              f"queue_wait_s_median={median:.0f} queue_wait_s_max={max(waits, default=0):.0f}",
              flush=True)
        return 0 if other == 0 and lost == 0 else 1
    finally:
        factory.stop_all()
        receiver.__exit__(None, None, None)
        server.stop()
        if args.keep:
            print(f"  kept: {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
