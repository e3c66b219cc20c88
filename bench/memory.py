"""Redis memory per delivered notification (issue 17: Redis holds only work in flight).

    .venv/bin/python -m bench.memory [--events 25000] [--destinations 4] [--window-s 20]

Two runs, each on a ``redis-server`` of its own (no persistence), a fast local receiver
and ``recnotify worker`` as its default command starts it, ``--events`` events each
matching ``--destinations`` global destinations (25,000 x 4 = 100,000 notifications):

1. **baseline: the old retention**: ``RECNOTIFY_DEDUPE_WINDOW_S`` 3 days and
   ``RECNOTIFY_STREAM_RETENTION_S`` 7 days, what this release kept before (a finished
   notification's state and log for 3 days, each event's copy and its stream entry for
   7 days): ``used_memory`` once everything is delivered and flushed;
2. **now**: a dedupe window of ``--window-s`` and a stream retention of 5 s; the same
   figure while the window is open, and again once it (and a stream trim, every 60 s)
   has passed.

Each figure is ``used_memory`` minus the same Redis' figure before the run, divided by
the notifications delivered; the stream's own share (``MEMORY USAGE`` of the stream key)
is printed apart: it holds the entries still kept for consumption. Prints a table, then
one JSON line. Target: at most 100 bytes per notification once the window has passed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

import redis

from bench.cluster import ROOT, Cluster
from bench.commands import own_redis, wait_flushed

OLD_WINDOW_S = 3 * 86400
OLD_STREAM_S = 7 * 86400
#: the consumer trims the stream once a minute
TRIM_EVERY_S = 60


def used(client: redis.Redis) -> int:
    info: dict[str, Any] = client.info("memory")
    return int(info["used_memory"])


def settle(client: redis.Redis, seconds: float) -> int:
    """``used_memory`` after ``seconds`` (the lowest of a few readings: allocator noise)."""
    time.sleep(seconds)
    readings = []
    for _ in range(3):
        readings.append(used(client))
        time.sleep(0.2)
    return min(readings)


def run(events: int, dests: int, window_s: float, stream_s: float, wait_after_s: float
        ) -> dict[str, Any]:
    with own_redis() as url:
        cluster = Cluster(url)
        try:
            rc = cluster.start_receiver(delay_ms=0)
            prefix = cluster.prefix("mem")
            yaml = "destinations:\n" + "".join(
                cluster.destination(f"d{n}", "global", rc.url("fast", "all"))
                for n in range(dests))
            factory = cluster.recnotify(prefix, yaml)
            env = factory.env(RECNOTIFY_DEDUPE_WINDOW_S=str(window_s),
                              RECNOTIFY_STREAM_RETENTION_S=str(stream_s))
            for name in ("RECNOTIFY_CONCURRENCY", "RECNOTIFY_PROCESSES"):
                env.pop(name, None)
            log = open(cluster.tmp / "recnotify-memory.log", "ab")  # noqa: SIM115
            proc = subprocess.Popen([sys.executable, "-m", "workers", "worker"], env=env,
                                    cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
            cluster.procs.append(proc)
            client = redis.Redis.from_url(url)
            keys = factory.settings.keys
            publisher = factory.publisher()
            publisher.publish("RECORDING_STARTED_EVENT", params={"UCID": "warm"})
            rc.wait("fast/all", dests, timeout_s=120)
            wait_flushed(client, keys.records)
            before = settle(client, 2.0)
            started = time.monotonic()
            for n in range(events):
                publisher.publish("RECORDING_STARTED_EVENT", params={"UCID": f"call-{n}"})
            total = events * dests
            rc.wait("fast/all", dests + total, timeout_s=120 + total / 20)
            wait_flushed(client, keys.records, timeout_s=300)
            elapsed = time.monotonic() - started
            held = settle(client, 1.0)
            stream_held = int(client.memory_usage(keys.events) or 0)
            out: dict[str, Any] = {"notifications": total, "elapsed_s": elapsed,
                                   "held_bytes": held - before, "stream_bytes": stream_held,
                                   "stream_entries": int(client.xlen(keys.events))}
            if wait_after_s:
                after = settle(client, wait_after_s)
                out.update(after_bytes=after - before,
                           after_stream_bytes=int(client.memory_usage(keys.events) or 0),
                           after_stream_entries=int(client.xlen(keys.events)),
                           after_keys=int(client.dbsize()))
            client.close()
            cluster.stop(proc)
            return out
        finally:
            cluster.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=25_000)
    parser.add_argument("--destinations", type=int, default=4)
    parser.add_argument("--window-s", type=float, default=20.0)
    args = parser.parse_args()
    old = run(args.events, args.destinations, OLD_WINDOW_S, OLD_STREAM_S, 0)
    new = run(args.events, args.destinations, args.window_s, 5.0,
              max(args.window_s, TRIM_EVERY_S) + 10)
    n = new["notifications"]

    def per(value: float) -> float:
        return value / n

    rows = [
        ("baseline: old retention (state 3 d, events 7 d)", per(old["held_bytes"]),
         per(old["stream_bytes"])),
        (f"now, inside the {args.window_s:.0f} s dedupe window", per(new["held_bytes"]),
         per(new["stream_bytes"])),
        ("now, once the window and a stream trim passed", per(new["after_bytes"]),
         per(new["after_stream_bytes"])),
    ]
    print(f"{'Redis used_memory held, bytes per notification':52} {'all':>9} {'stream':>9}")
    for label, total, stream in rows:
        print(f"{label:52} {total:9.1f} {stream:9.1f}")
    ratio = (f"baseline / now = {old['held_bytes'] / new['after_bytes']:.0f} x"
             if new["after_bytes"] > 0 else "now: nothing measurable held")
    print(f"({n} notifications ({args.events} events x {args.destinations} destinations); "
          f"after the window {new['after_keys']} keys and {new['after_stream_entries']} "
          f"stream entries left; {ratio}; target <= 100 bytes: "
          f"{'met' if per(new['after_bytes']) <= 100 else 'MISSED'})")
    print(json.dumps({"notifications": n, "baseline_bytes_per_notification":
                      round(per(old["held_bytes"]), 1),
                      "window_bytes_per_notification": round(per(new["held_bytes"]), 1),
                      "after_bytes_per_notification": round(per(new["after_bytes"]), 1),
                      "after_stream_bytes_per_notification":
                      round(per(new["after_stream_bytes"]), 1)}))


if __name__ == "__main__":
    main()
