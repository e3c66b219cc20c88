"""Ordered vs unordered delivery throughput with many concurrent recordings (issue 8).

    .venv/bin/python -m bench.ordered [--quick] [--workers 2] [-c 64] [--recordings N]

One set of recnotify workers and one fast receiver. ``N`` recordings (``UCID`` =
``call-<i>``) each publish the six lifecycle events, interleaved across recordings
(every RECORDING_STARTED first, then every SEGMENT_STARTED, ...). Each round has two
phases, run one after the other on the same workers: the events go to an unordered
destination, then to an ``ordered: true`` one (both POST, default retry and circuit,
the same signing secret; each phase has its own route and receiver group). Throughput
is notifications received per second, from the first publish to the last receipt;
the best round of each phase counts. The ordered phase is also checked: every
recording's notifications must reach the receiver in publish order, each exactly once.
Also callable from ``bench.run --ordered`` (:func:`measure`).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from bench.cluster import Cluster, ReceiverClient

LIFECYCLE = ("RECORDING_STARTED_EVENT", "SEGMENT_STARTED_EVENT", "RECORDING_PAUSED_EVENT",
             "RECORDING_RESUMED_EVENT", "SEGMENT_ENDED_EVENT", "RECORDING_ENDED_EVENT")
SIZES: dict[str, dict[str, int]] = {
    "quick": {"recordings": 100, "rounds": 1},
    "full": {"recordings": 500, "rounds": 2},
}
TARGET_RATIO = 0.8
Figures = dict[str, Any]


@dataclass(frozen=True)
class Phase:
    """One phase's outcome: throughput and, per recording, the event types in arrival order."""

    per_s: float
    received: int
    arrivals: dict[str, list[str]]

    def out_of_order(self, recordings: int) -> list[str]:
        """Recordings whose notifications did not arrive exactly once each, in publish order."""
        expected = list(LIFECYCLE)
        bad = [ucid for ucid, got in self.arrivals.items() if got != expected]
        missing = [f"call-{i}" for i in range(recordings) if f"call-{i}" not in self.arrivals]
        return sorted(bad + missing)


def marker_template() -> str:
    return "m=%UCID%~%EVENT%"


class OrderedBench:
    """Workers configured with one unordered and one ordered destination per round."""

    def __init__(self, cluster: Cluster, rc: ReceiverClient, workers: int, concurrency: int,
                 recordings: int, rounds: int) -> None:
        self.cluster, self.rc, self.recordings = cluster, rc, recordings
        self.prefix = cluster.prefix("ord")
        self.tag = self.prefix.rsplit("-", 1)[1].rstrip(":")
        yaml = "destinations:\n" + cluster.destination(
            "warm", "route:warm", rc.url("fast", f"warm{self.tag}"))
        for r in range(rounds):
            for kind, ordered in (("u", False), ("o", True)):
                yaml += (f"  - name: {kind}{r}\n    events: all\n    scope: 'route:{kind}{r}'\n"
                         f"    url: '{rc.url('fast', f'{kind}{r}{self.tag}')}'\n"
                         f"    method: POST\n    params: '{marker_template()}'\n"
                         f"    ordered: {'true' if ordered else 'false'}\n"
                         f"    secret: '{cluster.secret}'\n")
        self.factory = cluster.recnotify(self.prefix, yaml)
        self.procs = [self.factory.start(concurrency=concurrency, node=f"o{i}")
                      for i in range(workers)]
        self.publisher = self.factory.publisher()
        for i in range(10 * workers):
            self.publisher.publish("RECORDING_STARTED_EVENT", route="warm",
                                   params={"UCID": f"w{i}"})
        rc.wait(f"fast/warm{self.tag}", 10 * workers, timeout_s=120)

    def phase(self, kind: str, r: int) -> Phase:
        """Publish the interleaved lifecycles to route ``<kind><r>``; wait for every one."""
        total = len(LIFECYCLE) * self.recordings
        group = f"fast/{kind}{r}{self.tag}"
        started = time.time()
        for event_type in LIFECYCLE:
            for i in range(self.recordings):
                self.publisher.publish(event_type, route=f"{kind}{r}",
                                       params={"UCID": f"call-{i}"})
        marks = self.rc.wait(group, total, timeout_s=120 + total / 5)
        arrivals: dict[str, list[str]] = defaultdict(list)
        for marker, _ in marks:
            ucid, _, event_type = marker.rpartition("~")
            arrivals[ucid].append(event_type)
        per_s = len(marks) / max(max(t for _, t in marks) - started, 1e-6)
        return Phase(per_s, len(marks), dict(arrivals))

    def stop(self) -> None:
        self.factory.stop_all()


def measure(cluster: Cluster, rc: ReceiverClient, workers: int, concurrency: int,
            *, quick: bool, recordings: int | None = None) -> Figures:
    """``unordered_per_s``, ``ordered_per_s`` and the ordered phase's correctness figures."""
    sizes = SIZES["quick" if quick else "full"]
    count = recordings or sizes["recordings"]
    bench = OrderedBench(cluster, rc, workers, concurrency, count, sizes["rounds"])
    f: Figures = {"unordered_per_s": 0.0, "ordered_per_s": 0.0, "ordered_recordings": count,
                  "ordered_rounds": sizes["rounds"], "ordered_bad": []}
    try:
        for r in range(sizes["rounds"]):  # alternate, so both see the same machine load
            unordered = bench.phase("u", r)
            ordered = bench.phase("o", r)
            f["unordered_per_s"] = max(f["unordered_per_s"], unordered.per_s)
            f["ordered_per_s"] = max(f["ordered_per_s"], ordered.per_s)
            f["ordered_bad"] = sorted({*f["ordered_bad"], *ordered.out_of_order(count)})
    finally:
        bench.stop()
    return f


def report(f: Figures) -> list[str]:
    """The table rows and the correctness line for :func:`measure`'s figures."""
    ratio = f["ordered_per_s"] / max(f["unordered_per_s"], 1e-6)
    ok = "yes" if ratio >= TARGET_RATIO else "NO"
    bad: list[str] = f["ordered_bad"]
    n, rounds = f["ordered_recordings"], f["ordered_rounds"]
    return [
        f"{f'unordered, {n} recordings x 6 (n/s)':40} {'':10} {f['unordered_per_s']:10.1f}",
        f"{f'ordered, {n} recordings x 6 (n/s)':40} {'':10} {f['ordered_per_s']:10.1f}  "
        f"{f'>= {TARGET_RATIO} x unordered':24} {ok} ({ratio:.2f} x)",
        "ordered correctness: " + (
            f"OK - all {n} recordings x {rounds} round(s) received their 6 events once each, "
            "in publish order" if not bad else
            f"FAILED - {len(bad)} recording(s) out of order, duplicated or incomplete, "
            f"e.g. {', '.join(bad[:5])}"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 recordings, 1 round (~20 s)")
    parser.add_argument("--workers", type=int, default=2, help="recnotify worker processes")
    parser.add_argument("-c", "--concurrency", type=int, default=64, help="threads per worker")
    parser.add_argument("--recordings", type=int, default=None, help="concurrent recordings")
    args = parser.parse_args()
    cluster = Cluster(os.environ.get("RECNOTIFY_REDIS_URL") or "redis://127.0.0.1:6379/0")
    started = time.monotonic()
    try:
        rc = cluster.start_receiver(delay_ms=100)
        f = measure(cluster, rc, args.workers, args.concurrency, quick=args.quick,
                    recordings=args.recordings)
    finally:
        cluster.close()
    print(f"\n{'measure':40} {'':10} {'recnotify':>10}  {'target':24} ok")
    print("\n".join(report(f)))
    print(f"(one run on {os.cpu_count()} cores; load average at the end "
          f"{os.getloadavg()[0]:.2f}; {args.workers} worker(s) x {args.concurrency} threads; "
          f"best of {f['ordered_rounds']} alternating round(s); "
          f"{time.monotonic() - started:.0f} s)")
    print(json.dumps({k: round(f[k], 3) for k in ("ordered_per_s", "unordered_per_s")}
                     | {"ordered_in_order": not f["ordered_bad"]}))


if __name__ == "__main__":
    main()
