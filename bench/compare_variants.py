"""Throughput and worker CPU per notification of bench.variant_worker variants, side by side.

    .venv/bin/python -m bench.compare_variants [count] [variant ...]

One worker process (64 threads) per variant, in turn, against the fast receiver; the
pseudo-variant ``naive`` is the baseline of bench.naive (prefork, its 2 children).
Variants combine with ``+`` (``noevents+quiet+fewer_rtt``); ``@N`` sets the threads
(``stock@8``; default 64).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.cluster import Cluster, ReceiverClient, children

NAIVE_PREFIX: list[str] = []


def cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def measure(rc: ReceiverClient, group: str, pids: list[int], send: Callable[[str], None],
            count: int) -> tuple[float, float]:
    """(notifications per second, worker CPU ms per notification)."""
    for i in range(20):
        send(f"w{i}")
    rc.wait(group, 20, timeout_s=60)
    cpu, started = cpu_s(pids), time.time()
    for i in range(count):
        send(str(i))
    marks = rc.wait(group, count + 20, timeout_s=300)
    elapsed = max(t for _, t in marks) - started
    return count / elapsed, (cpu_s(pids) - cpu) / count * 1000


def run_variant(cluster: Cluster, rc: ReceiverClient, variant: str, group: str,
                count: int) -> tuple[float, float]:
    if variant == "naive":
        from bench.naive import app, post

        if not NAIVE_PREFIX:  # the naive app connects once: one prefix per process
            NAIVE_PREFIX.append(cluster.prefix("cvnaive"))
            app.conf.broker_url = cluster.redis_url
            app.conf.broker_transport_options = {"global_keyprefix": NAIVE_PREFIX[0]}
        proc = cluster.start_naive(NAIVE_PREFIX[0])
        url = rc.url("fast", group)

        def send(marker: str) -> None:
            post.delay(f"{url}?m={marker}", {"id": marker})

        try:
            return measure(rc, f"fast/{group}", [proc.pid, *children(proc.pid)], send, count)
        finally:
            cluster.stop(proc)
    factory = cluster.recnotify(cluster.prefix(group), "destinations:\n" + cluster.destination(
        "fast", "route:fast", rc.url("fast", group)))
    factory.store  # noqa: B018 - schema first
    node = f"{os.uname().nodename}-{group}"
    log = cluster.tmp / f"{group}.log"
    name, _, threads = variant.partition("@")
    proc = subprocess.Popen([sys.executable, "-m", "bench.variant_worker", name, threads or "64",
                             node],
                            env=factory.env(), stdout=subprocess.DEVNULL,
                            stderr=open(log, "ab"))  # noqa: SIM115
    proc.log_path = log  # type: ignore[attr-defined]
    factory.procs.append(proc)
    try:
        factory.wait_ready(proc, node)
        publisher = factory.publisher()

        def publish(marker: str) -> None:
            publisher.publish("RECORDING_STARTED_EVENT", route="fast", params={"UCID": marker})

        return measure(rc, f"fast/{group}", [proc.pid], publish, count)
    finally:
        factory.stop_all()


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1500
    variants = sys.argv[2:] or ["naive", "stock", "noevents", "quiet", "fewer_rtt",
                                "noevents+quiet+fewer_rtt"]
    cluster = Cluster("redis://127.0.0.1:6379/0")
    try:
        rc = cluster.start_receiver()
        for index, variant in enumerate(variants):
            rate, cpu_ms = run_variant(cluster, rc, variant, f"v{index}", count)
            print(f"{variant:28} {rate:7.1f} notifications/s   {cpu_ms:5.2f} ms worker CPU each"
                  f"   (load average {os.getloadavg()[0]:.2f})", flush=True)
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
