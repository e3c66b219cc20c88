"""Publish-to-receipt time of a single event, one at a time (issue 2's figure).

A real `recnotify worker`, a real Redis and a real HTTP receiver (tests.receiver, in
this process): publish one event, wait until the receiver has it, repeat. Prints the
median, p90 and max of N (default 100) and a JSON line.

    python -m bench.single [--count 100]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import redis

from tests.helpers import WorkerFactory
from tests.receiver import Receiver

REDIS_URL = "redis://127.0.0.1:6379/0"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--redis-url", default=REDIS_URL)
    args = parser.parse_args()
    prefix = f"rnbench-single-{uuid.uuid4().hex[:8]}:"
    with tempfile.TemporaryDirectory() as tmp, Receiver() as receiver:
        workers = WorkerFactory(args.redis_url, prefix, Path(tmp))
        workers.configure(f"destinations:\n  - name: one\n    events: all\n    scope: global\n"
                          f"    url: {receiver.url('/one')}\n    params: 'u=%UCID%'\n")
        workers.start(concurrency=16)
        publisher = workers.publisher()
        try:
            for i in range(5):  # warm-up: connections, caches
                publisher.publish("RECORDING_STARTED_EVENT", params={"UCID": f"w{i}"})
            receiver.wait_for(5)
            timings_ms = []
            for i in range(args.count):
                before = len(receiver.received())
                started = time.perf_counter()
                publisher.publish("RECORDING_STARTED_EVENT", params={"UCID": f"s{i}"})
                receiver.wait_for(before + 1, timeout_s=30)
                timings_ms.append((time.perf_counter() - started) * 1000)
        finally:
            workers.stop_all()
            client = redis.Redis.from_url(args.redis_url)
            keys = list(client.scan_iter(match=prefix + "*"))
            if keys:
                client.delete(*keys)
    timings_ms.sort()
    median = statistics.median(timings_ms)
    p90 = timings_ms[int(len(timings_ms) * 0.9) - 1]
    print(f"publish -> received, {args.count} single events: median {median:.1f} ms, "
          f"p90 {p90:.1f} ms, max {timings_ms[-1]:.1f} ms")
    print(json.dumps({"single_median_ms": round(median, 2), "single_p90_ms": round(p90, 2),
                      "single_max_ms": round(timings_ms[-1], 2), "count": args.count}))


if __name__ == "__main__":
    main()
