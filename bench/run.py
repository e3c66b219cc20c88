"""The recnotify benchmark: recnotify and the naive Celery baseline, side by side, in one run.

    .venv/bin/python -m bench.run [--quick] [--scale] [--ordered] [--workers 2] [--concurrency 100]

Measures (issue 4): naive baseline and recnotify against a fast and a 100 ms receiver,
a 1,000-destination fan-out, matching with 10 and 100,000 destinations, publish ->
received latency at half the measured maximum rate, peak RSS per worker process;
``--scale`` repeats the slow-receiver case with 1, 2 and 4 worker processes;
``--ordered`` adds ordered vs unordered throughput, many recordings (bench.ordered). Prints a
table, then one line of JSON. Uses the Redis at RECNOTIFY_REDIS_URL (default
127.0.0.1:6379) under fresh key prefixes, deleted at the end.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import redis

from bench.cluster import Cluster, ReceiverClient, children, peak_rss_mb
from bench.ordered import measure as measure_ordered
from bench.ordered import report as ordered_report
from bench.receiver import capacity_per_s
from producer.events import validate_event
from workers.destinations import parse_destination
from workers.destinations.routing import RoutingIndex

SIZES: dict[str, dict[str, int]] = {
    "quick": {"naive_fast": 200, "naive_slow": 40, "fast": 600, "slow": 600, "latency_s": 3,
              "cap_ms": 500},
    "full": {"naive_fast": 1500, "naive_slow": 200, "fast": 3000, "slow": 3000,
             "latency_s": 10, "cap_ms": 2000},
}
FANOUT = 1000
Figures = dict[str, Any]


def per_s(started: float, marks: list[tuple[str, float]]) -> float:
    return len(marks) / max(max(t for _, t in marks) - started, 1e-6)


def burst(send: Callable[[int], None], rc: ReceiverClient, group: str, count: int) -> float:
    """Send ``count`` messages as fast as possible; the received rate, per second."""
    before = rc.count(group)
    started = time.time()
    for i in range(count):
        send(i)
    return per_s(started, rc.wait(group, before + count, timeout_s=60 + count / 5)[before:])


# -- naive baseline ------------------------------------------------------------------------
class Naive:
    def __init__(self, cluster: Cluster, rc: ReceiverClient) -> None:
        from bench.naive import app, post

        self.cluster, self.rc, self.post = cluster, rc, post
        prefix = cluster.prefix("naive")
        app.conf.broker_url = cluster.redis_url
        app.conf.broker_transport_options = {"global_keyprefix": prefix}
        self.proc = cluster.start_naive(prefix)
        self.payload = validate_event({"type": "RECORDING_STARTED_EVENT", "route": "r",
                                       "params": {"UCID": "13-23132@1.2.3.4"}}).to_dict()
        for kind in ("fast", "slow"):
            for i in range(4):
                post.delay(rc.url(kind, "nwarm") + f"?m=w{i}", self.payload)
            rc.wait(f"{kind}/nwarm", 4, timeout_s=120)

    def throughput(self, kind: str, count: int) -> float:
        url = self.rc.url(kind, "n")
        return burst(lambda i: self.post.delay(f"{url}?m={i}", self.payload) and None,
                     self.rc, f"{kind}/n", count)

    def rss_mb(self) -> float:
        return max(peak_rss_mb(pid) for pid in [self.proc.pid, *children(self.proc.pid)])

    def stop(self) -> None:
        self.cluster.stop(self.proc)


# -- recnotify -----------------------------------------------------------------------------
class Recnotify:
    started = 0

    def __init__(self, cluster: Cluster, rc: ReceiverClient, workers: int, concurrency: int,
                 *, fanout: bool = True) -> None:
        self.cluster, self.rc = cluster, rc
        Recnotify.started += 1
        self.tag = tag = f"{Recnotify.started}x{workers}"
        self.prefix = cluster.prefix(f"rn{tag}")
        d = cluster.destination
        yaml = "destinations:\n" + "".join((
            d("fast", "route:fast", rc.url("fast", f"r{tag}")),
            d("slow", "route:slow", rc.url("slow", f"r{tag}")),
            d("warm", "route:warm", rc.url("fast", f"warm{tag}")),
            d("lat", "route:lat", rc.url("fast", "lat"))))
        if fanout:
            yaml += "".join(d(f"fan-{i:04d}", "route:fanout", rc.url("fast", "fan"))
                            for i in range(FANOUT))
        self.factory = cluster.recnotify(self.prefix, yaml)
        self.procs = [self.factory.start(concurrency=concurrency, node=f"b{i}")
                      for i in range(workers)]
        self.publisher = self.factory.publisher()
        for i in range(10 * workers):
            self.publish("warm", f"w{i}")
        rc.wait(f"fast/warm{tag}", 10 * workers, timeout_s=120)

    def publish(self, route: str, marker: str) -> None:
        self.publisher.publish("RECORDING_STARTED_EVENT", route=route, params={"UCID": marker})

    def throughput(self, route: str, count: int) -> float:
        group = f"{route}/r{self.tag}"
        return burst(lambda i: self.publish(route, str(i)), self.rc, group, count)

    def latency_ms(self, rate_per_s: float, duration_s: float) -> tuple[float, float]:
        count = max(int(rate_per_s * duration_s), 20)
        sent: dict[str, float] = {}
        started = time.monotonic()
        for i in range(count):
            pause = started + i / rate_per_s - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            sent[str(i)] = time.time()
            self.publish("lat", str(i))
        marks = self.rc.wait("fast/lat", count, timeout_s=120)
        waits = sorted((t - sent[m]) * 1000 for m, t in marks)
        return statistics.median(waits), waits[min(len(waits) - 1, int(len(waits) * 0.99))]

    def fanout(self) -> tuple[float, float]:
        """(publish -> last task-sent event seen, publish -> last notification received)."""
        client = redis.Redis.from_url(self.cluster.redis_url)
        db = int(client.connection_pool.connection_kwargs.get("db", 0))
        pubsub = client.pubsub()  # type: ignore[no-untyped-call]
        pubsub.subscribe(f"{self.prefix}/{db}.celeryev/task.multi")
        pubsub.get_message(timeout=5)
        enqueued: list[float] = []

        def watch() -> None:
            seen = 0
            while seen < FANOUT:
                message = pubsub.get_message(timeout=60)
                if message is None:
                    return
                if message["type"] == "message":  # a list of task-sent events
                    body = json.loads(message["data"])["body"]
                    seen += len(json.loads(base64.b64decode(body)))
            enqueued.append(time.time())

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        started = time.time()
        self.publish("fanout", "fan")
        marks = self.rc.wait("fast/fan", FANOUT, timeout_s=120)
        watcher.join(60)
        pubsub.close()
        enqueue_s = enqueued[0] - started if enqueued else float("nan")
        return enqueue_s, max(t for _, t in marks) - started

    def rss_mb(self) -> float:
        return max(peak_rss_mb(p.pid) for p in self.procs)

    def stop(self) -> None:
        self.factory.stop_all()


def enqueue_call_s(cluster: Cluster) -> float:
    """The fan-out enqueue call alone (make_enqueue, 1,000 tasks), in this process."""
    from workers.config.settings import Settings
    from workers.taskqueue.app import create_app
    from workers.taskqueue.enqueue import make_enqueue

    settings = Settings.from_env({}, redis_url=cluster.redis_url,
                                 key_prefix=cluster.prefix("enq"), secret_key="x")
    enqueue = make_enqueue(create_app(settings))
    started = time.perf_counter()
    enqueue([("event", f"fan-{i:04d}") for i in range(FANOUT)])
    return time.perf_counter() - started


# -- matching ------------------------------------------------------------------------------
def matching_us(count: int, rounds: int = 20000) -> float:
    base = parse_destination({"name": "d", "events": ["RECORDING_STARTED_EVENT",
                              "RECORDING_ENDED_EVENT"], "scope": "global",
                              "url": "http://127.0.0.1:9/x"})
    kinds = (("route", "r"), ("account", "a"), ("realm", "x"))
    index = RoutingIndex.build(
        replace(base, name=f"d{i}", scope=f"{kinds[i % 3][0]}:{kinds[i % 3][1]}{i // 3}")
        for i in range(count))
    event = validate_event({"type": "RECORDING_STARTED_EVENT", "route": "r1", "account": "a1",
                            "realm": "x1", "params": {"UCID": "u"}})
    assert len(index.match(event)) == 3
    started = time.perf_counter()
    for _ in range(rounds):
        index.match(event)
    return (time.perf_counter() - started) / rounds * 1e6


# -- the run -------------------------------------------------------------------------------
TARGETS: list[tuple[str, str, str, Callable[[Figures], bool]]] = [
    ("fast_per_s", "notifications/s, fast receiver", ">= 0.9 x naive",
     lambda f: f["fast_per_s"] >= 0.9 * f["naive_fast_per_s"]),
    ("slow_per_s", "notifications/s, 100 ms receiver", ">= 0.8 x fast",
     lambda f: f["slow_per_s"] >= 0.8 * f["fast_per_s"]),
    ("fanout_enqueue_s", "fan-out 1,000: all enqueued (s)", "< 0.5",
     lambda f: f["fanout_enqueue_s"] < 0.5),
    ("fanout_all_received_s", "fan-out 1,000: all received (s)", "-", lambda f: True),
    ("match_10_us", "matching, 10 destinations (us)", "-", lambda f: True),
    ("match_100k_us", "matching, 100,000 destinations (us)", "< 1000, <= 2 x match_10",
     lambda f: f["match_100k_us"] < 1000 and f["match_100k_us"] <= 2 * f["match_10_us"]),
    ("p50_ms", "latency p50 at half max rate (ms)", "-", lambda f: True),
    ("p99_ms", "latency p99 at half max rate (ms)", "< 50", lambda f: f["p99_ms"] < 50),
    ("rss_mb", "peak RSS per worker process (MiB)", "< 150", lambda f: f["rss_mb"] < 150),
]
BASELINE = {"fast_per_s": "naive_fast_per_s", "slow_per_s": "naive_slow_per_s",
            "rss_mb": "naive_rss_mb"}


def print_table(f: Figures) -> None:
    print(f"\n{'measure':40} {'naive':>10} {'recnotify':>10}  {'target':24} ok")
    for key, label, target, check in TARGETS:
        naive = f"{f[BASELINE[key]]:10.1f}" if key in BASELINE else f"{'':10}"
        seconds = key.endswith("_s") and not key.endswith("per_s")
        value = f"{f[key]:10.3f}" if seconds else f"{f[key]:10.1f}"
        print(f"{label:40} {naive} {value}  {target:24} {'yes' if check(f) else 'NO'}")
    print(f"{'receiver capacity, fast (req/s, >=)':40} {'':10} {f['receiver_fast_per_s']:10.0f}")
    print(f"{'receiver capacity, 100 ms (req/s, >=)':40} {'':10} {f['receiver_slow_per_s']:10.0f}")
    print(f"{'enqueue call alone, 1,000 tasks (s)':40} {'':10} {f['enqueue_call_s']:10.3f}")
    print(f"{'latency measured at (events/s)':40} {'':10} {f['latency_rate_per_s']:10.1f}")
    for workers, rate in f.get("scale", {}).items():
        print(f"{f'scale-out: 100 ms receiver, {workers} worker(s)':40} {'':10} {rate:10.1f}")
    if "ordered_per_s" in f:
        print("\n".join(ordered_report(f)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts (< 1 minute)")
    parser.add_argument("--scale", action="store_true", help="slow case with 1, 2, 4 workers")
    parser.add_argument("--workers", type=int, default=2, help="recnotify worker processes")
    parser.add_argument("--concurrency", type=int, default=100, help="threads per worker")
    parser.add_argument("--ordered", action="store_true",
                        help="ordered vs unordered, many recordings (bench.ordered)")
    args = parser.parse_args()
    sizes = SIZES["quick" if args.quick else "full"]
    url = os.environ.get("RECNOTIFY_REDIS_URL") or "redis://127.0.0.1:6379/0"
    cluster = Cluster(url)
    f: Figures = {}
    try:
        rc = cluster.start_receiver(delay_ms=100)
        f["receiver_fast_per_s"] = capacity_per_s(rc.port, "/fast/cap", 32, sizes["cap_ms"] / 1e3)
        f["receiver_slow_per_s"] = capacity_per_s(rc.port, "/slow/cap", 400, sizes["cap_ms"] / 1e3)
        f["match_10_us"] = matching_us(10)
        f["match_100k_us"] = matching_us(100_000)
        f["enqueue_call_s"] = enqueue_call_s(cluster)
        naive = Naive(cluster, rc)
        rn = Recnotify(cluster, rc, args.workers, args.concurrency)
        # Both run side by side, measured in alternation; the best round of each counts
        # (the one least disturbed by whatever else runs on the machine).
        rounds = 1 if args.quick else 3
        f["naive_fast_per_s"] = f["fast_per_s"] = f["naive_slow_per_s"] = f["slow_per_s"] = 0.0
        for _ in range(rounds):
            f["naive_fast_per_s"] = max(f["naive_fast_per_s"],
                                        naive.throughput("fast", sizes["naive_fast"]))
            f["fast_per_s"] = max(f["fast_per_s"], rn.throughput("fast", sizes["fast"]))
        f["naive_slow_per_s"] = naive.throughput("slow", sizes["naive_slow"])
        for _ in range(rounds):
            f["slow_per_s"] = max(f["slow_per_s"], rn.throughput("slow", sizes["slow"]))
        f["naive_rss_mb"] = naive.rss_mb()
        naive.stop()
        f["latency_rate_per_s"] = f["fast_per_s"] / 2
        f["p50_ms"], f["p99_ms"] = rn.latency_ms(f["latency_rate_per_s"], sizes["latency_s"])
        f["fanout_enqueue_s"], f["fanout_all_received_s"] = rn.fanout()
        f["rss_mb"] = rn.rss_mb()
        rn.stop()
        if args.ordered:
            f.update(measure_ordered(cluster, rc, args.workers, args.concurrency,
                                     quick=args.quick))
        if args.scale:
            f["scale"] = {}
            for workers in (1, 2, 4):  # one set at a time
                scaled = Recnotify(cluster, rc, workers, args.concurrency, fanout=False)
                f["scale"][workers] = scaled.throughput("slow", sizes["slow"])
                scaled.stop()
    finally:
        cluster.close()
    print_table(f)
    print(f"(one run on {os.cpu_count()} cores; load average at the end "
          f"{os.getloadavg()[0]:.2f}; {args.workers} recnotify worker(s) x {args.concurrency} "
          f"threads; naive: prefork, default concurrency; throughput: best of "
          f"{rounds} alternating round(s))")
    keys = ["naive_fast_per_s", "fast_per_s", "naive_slow_per_s", "slow_per_s",
            "fanout_enqueue_s", "fanout_all_received_s", "match_10_us", "match_100k_us",
            "p50_ms", "p99_ms", "rss_mb"] + (["ordered_per_s", "unordered_per_s"]
                                             if args.ordered else [])
    print(json.dumps({k: round(f[k], 3) for k in keys}))


if __name__ == "__main__":
    main()
