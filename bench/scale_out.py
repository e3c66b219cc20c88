"""Scale-out figure: throughput with 1, 2 and 3 worker processes against a 100 ms receiver.

Each run starts N ``recnotify worker`` processes (distinct node names) against one
Redis of its own (an embedded ``redis-server`` with AOF everysec, so its command
counts are recnotify's alone), publishes ``--events`` events that each match 3
destinations on the asyncio receiver of ``bench.receiver`` (every answer after
``--delay-ms``), and measures, from the first publish to the last arrival:

- events/s and notifications/s;
- worker CPU per notification (user+system time of the worker processes);
- Redis commands per notification (``INFO commandstats``), Redis CPU per notification
  and Redis memory still held per notification once it is delivered (event copy,
  stream entry, notification state and attempt log, kept for their retention).

    python -m bench.scale_out [--events 1000] [--concurrency 64] [--processes 1 2 3]

The figures feed docs/capacity.md. On a shared 2-core machine they are a floor.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from bench.cluster import Cluster, ReceiverClient
from workers.ops.embedded import EmbeddedRedis

DESTINATIONS = 3
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Run:
    processes: int
    events: int
    elapsed_s: float
    worker_cpu_s: float
    redis_calls: int
    redis_cpu_s: float
    redis_bytes: int
    top_commands: list[tuple[str, int]]

    @property
    def notifications(self) -> int:
        return self.events * DESTINATIONS

    def row(self) -> str:
        n = self.notifications
        return (f"| {self.processes} | {self.events / self.elapsed_s:8.0f} | "
                f"{n / self.elapsed_s:8.0f} | {n / self.elapsed_s / self.processes:8.0f} | "
                f"{1000 * self.worker_cpu_s / n:6.2f} | {self.redis_calls / n:6.1f} | "
                f"{1e6 * self.redis_cpu_s / n:6.0f} | {self.redis_bytes / n:6.0f} |")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def redis_counters(client: redis.Redis) -> tuple[dict[str, int], float]:
    stats = client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    cpu = client.info("cpu")
    return calls, float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"])


def destinations_yaml(cluster: Cluster, receiver: ReceiverClient, group: str) -> str:
    items = "".join(cluster.destination(f"d{i}", "global", receiver.url("slow", f"{group}d{i}"))
                    for i in range(DESTINATIONS))
    return "destinations:\n" + items


def wait_all(receiver: ReceiverClient, group: str, count: int, timeout_s: float) -> float:
    """Wait for ``count`` requests on each destination's group; the last arrival time."""
    last = 0.0
    for i in range(DESTINATIONS):
        marks = receiver.wait(f"slow/{group}d{i}", count, timeout_s)
        last = max([last, *(t for _m, t in marks)])
    return last


def run(cluster: Cluster, receiver: ReceiverClient, client: redis.Redis, processes: int,
        events: int, concurrency: int) -> Run:
    prefix = cluster.prefix(f"scale{processes}")
    group = f"p{processes}x"
    factory = cluster.recnotify(prefix, destinations_yaml(cluster, receiver, group))
    procs = [factory.start(concurrency=concurrency, node=f"scale{processes}-{i}", wait=False)
             for i in range(processes)]
    for i, proc in enumerate(procs):
        factory.wait_ready(proc, f"{os.uname().nodename}-scale{processes}-{i}", timeout_s=90)
    publisher = factory.publisher()
    warmup = 10 * processes
    for i in range(warmup):
        publisher.publish("RECORDING_STARTED_EVENT", params={"UCID": f"warm-{i}"})
    wait_all(receiver, group, warmup, 120)
    calls_before, redis_cpu_before = redis_counters(client)
    memory_before = int(client.info("memory")["used_memory"])
    cpu_before = sum(cpu_s(p.pid) for p in procs)
    started = time.time()
    for i in range(events):
        publisher.publish("RECORDING_STARTED_EVENT", params={"UCID": f"ev-{i}"})
    last = wait_all(receiver, group, warmup + events, 600)
    cpu_after = sum(cpu_s(p.pid) for p in procs)
    calls_after, redis_cpu_after = redis_counters(client)
    time.sleep(2)  # the flusher empties the records buffer into the database
    memory_after = int(client.info("memory")["used_memory"])
    factory.stop_all()
    delta = {k: v - calls_before.get(k, 0) for k, v in calls_after.items()}
    top = sorted(((k, v) for k, v in delta.items() if v), key=lambda kv: -kv[1])
    return Run(processes, events, last - started, cpu_after - cpu_before, sum(delta.values()),
               redis_cpu_after - redis_cpu_before, memory_after - memory_before, top)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--delay-ms", type=float, default=100.0)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--json", type=Path, help="Also write the figures here.")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="rnscale-redis-"))
    embedded = EmbeddedRedis(data_dir).start()
    client = redis.Redis.from_url(embedded.url)
    cluster = Cluster(embedded.url)
    runs: list[Run] = []
    try:
        receiver = cluster.start_receiver(args.delay_ms)
        for processes in args.processes:
            runs.append(run(cluster, receiver, client, processes, args.events,
                            args.concurrency))
            print(f"# {processes} process(es): {runs[-1].notifications} notifications in "
                  f"{runs[-1].elapsed_s:.1f} s", flush=True)
    finally:
        cluster.close()
        embedded.stop()
        shutil.rmtree(data_dir, ignore_errors=True)

    print(f"\nreceiver delay {args.delay_ms:.0f} ms, {DESTINATIONS} destinations per event, "
          f"-c {args.concurrency} per process, {os.cpu_count()} CPU cores shared by all\n")
    print("| processes | events/s | notifications/s | notif/s per process "
          "| worker CPU ms/notif | Redis cmds/notif | Redis CPU us/notif | Redis bytes/notif |")
    print("|---|---|---|---|---|---|---|---|")
    for item in runs:
        print(item.row())
    print("\nRedis commands per notification (last run):")
    last = runs[-1]
    for name, calls in last.top_commands:
        print(f"  {name:<14} {calls / last.notifications:6.2f}")
    if args.json:
        args.json.write_text(json.dumps([{**item.__dict__, "notifications": item.notifications}
                                         for item in runs], indent=2))


if __name__ == "__main__":
    main()
