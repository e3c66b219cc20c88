"""Redis commands per notification (issue 17), counted by Redis itself.

    .venv/bin/python -m bench.commands [--count 2000] [--idle-s 5]

Starts its own ``redis-server`` on a free port (no persistence), so no other traffic is
counted, a fast local receiver, and ``recnotify worker`` exactly as its default command
starts (no option). One destination; ``--count`` events of one type, each matching it.

1. after a warm-up, ``CONFIG RESETSTAT``, an idle window of ``--idle-s``: the background
   rate of every command (heartbeat, schedule mover, claim, flusher lock, ...);
2. ``CONFIG RESETSTAT``, publish the events, wait until the receiver has every one and
   the records list has been flushed to the database, read ``INFO commandstats``.

Prints, per notification, every command name (the raw figure and the same with the
idle window's rate over the run's length taken off), where it comes from, and two
round-trip figures: ``total_commands_processed`` (commands the clients sent: inside a
script or a MULTI each counts, pipelined ones each count) and ``total_reads_processed``
(socket reads: one per request or pipeline that arrives at once, so close to the round
trips). ``calls`` in commandstats also counts the commands a Lua script runs; that sum
is the figure the capacity note quotes (docs/capacity.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis

from bench.cluster import ROOT, Cluster

#: Where each command comes from in recnotify's default worker (publish: the producer).
SOURCE = {
    "xadd": "publish (the producer)",
    "xreadgroup": "consumer: one per batch",
    "xack": "consumer: one per batch, in its MULTI",
    "multi": "consumer: the batch's MULTI",
    "exec": "consumer: the batch's EXEC",
    "evalsha": "attempt_conclude (deliver); event_claim_ids (per batch); circuit_admit "
               "(an open or half-open circuit only)",
    "eval": "scripts (first call)",
    "lpush": "task messages (consumer enqueue, one per batch)",
    "zadd": "watchdog entries (enqueue, per batch); "
            "watchdog re-arm XX (deliver: a task from a backlog only)",
    "publish": "Celery task events: task-sent, one per enqueue batch (up to 200 events); "
               "received, started, succeeded, buffered in the worker",
    "brpop": "kombu: fetch a task",
    "hset": "notification state (attempt_conclude)",
    "hdel": "circuit_since / waiting (attempt_conclude, a notification that waited only)",
    "zrem": "watchdog forget (attempt_conclude)",
    "get": "deliver: event read",
    "set": "deliver: lock SET NX PX; event store (event_claim_ids SET NX)",
    "hgetall": "deliver: notification state read",
    "hmget": "deliver: the circuit's first look (claim pipeline)",
    "rpush": "attempt record (attempt_conclude); attempt log (not on a delivered first "
             "attempt)",
    "expire": "TTL of the state (and of the log, not on a delivered first attempt: "
              "attempt_conclude); the event copy, shortened to the dedupe window once its "
              "row is written (flusher)",
    "hincrby": "counters: dispatched (consumer, per batch); the worker's Tally flush "
               "(attempts, delivered, latency buckets; every 0.5 s per process)",
    "hincrbyfloat": "latency sum (the worker's Tally flush, every 0.5 s per process)",
    "sadd": "UCID index (consumer)",
    "hsetnx": "first_at (attempt_conclude, a retried notification only)",
    "srem": "waiting set (attempt_conclude, a retried notification only)",
    "del": "lock release (lock_release: a retry or a dead letter; a delivered "
           "notification's lock expires by itself)",
    "lrange": "records flush",
    "ltrim": "records flush",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def own_redis() -> Iterator[str]:
    """A throwaway redis-server (no RDB, no AOF) on a free port; its URL."""
    binary = shutil.which("redis-server") or shutil.which("valkey-server")
    if binary is None:
        raise SystemExit("bench.commands needs redis-server (or valkey-server) on PATH")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="rnbench-redis-")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no", "--dir", workdir],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    try:
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def snapshot(client: redis.Redis) -> tuple[dict[str, int], dict[str, int]]:
    """``INFO commandstats`` calls per command, and the ``INFO stats`` counters."""
    stats: dict[str, Any] = client.info("commandstats")
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    counters: dict[str, Any] = client.info("stats")
    keep = ("total_commands_processed", "total_reads_processed", "total_writes_processed")
    out = {k: int(counters[k]) for k in keep if k in counters}
    cpu: dict[str, Any] = client.info("cpu")  # not reset by RESETSTAT: differences only
    out["cpu_us"] = int((float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])) * 1e6)
    return calls, out


def wait_flushed(client: redis.Redis, records_key: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while client.llen(records_key):
        if time.monotonic() > deadline:
            raise RuntimeError("the records list was not flushed")
        time.sleep(0.05)


def measure(url: str, count: int, idle_s: float) -> dict[str, Any]:
    cluster = Cluster(url)
    try:
        rc = cluster.start_receiver(delay_ms=100)
        prefix = cluster.prefix("cmd")
        yaml = "destinations:\n" + cluster.destination("fast", "route:fast",
                                                       rc.url("fast", "r"))
        factory = cluster.recnotify(prefix, yaml)
        env = factory.env()
        for name in ("RECNOTIFY_CONCURRENCY", "RECNOTIFY_PROCESSES"):
            env.pop(name, None)
        log = open(cluster.tmp / "recnotify-commands.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "workers", "worker"], env=env, cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT)
        cluster.procs.append(proc)
        publisher = factory.publisher()
        client = redis.Redis.from_url(url)
        records = factory.settings.keys.records

        def publish(marker: str) -> None:
            publisher.publish("RECORDING_STARTED_EVENT", route="fast", params={"UCID": marker})

        warm = 200
        for i in range(warm):
            publish(f"w{i}")
        rc.wait("fast/r", warm, timeout_s=120)
        wait_flushed(client, records)
        time.sleep(1.0)

        client.config_resetstat()
        idle_cpu = snapshot(client)[1]["cpu_us"]
        time.sleep(idle_s)
        idle_calls, idle_counters = snapshot(client)
        idle_counters["cpu_us"] -= idle_cpu

        client.config_resetstat()
        run_cpu = snapshot(client)[1]["cpu_us"]
        started = time.monotonic()
        for i in range(count):
            publish(str(i))
        rc.wait("fast/r", warm + count, timeout_s=60 + count / 5)
        wait_flushed(client, records)
        elapsed = time.monotonic() - started
        calls, counters = snapshot(client)
        counters["cpu_us"] -= run_cpu
        client.close()
        cluster.stop(proc)
    finally:
        cluster.close()
    scale = elapsed / idle_s
    return {"count": count, "elapsed_s": elapsed, "idle_s": idle_s, "calls": calls,
            "counters": counters, "idle_calls": idle_calls, "idle_counters": idle_counters,
            "background_scale": scale}


def report(m: dict[str, Any]) -> tuple[str, dict[str, float]]:
    n, scale = m["count"], m["background_scale"]
    calls, idle = m["calls"], m["idle_calls"]
    lines = [f"{'command':16} {'per notif.':>10} {'less idle':>10}  from",
             f"{'-' * 16} {'-' * 10} {'-' * 10}  {'-' * 40}"]
    total = total_net = 0.0
    for name in sorted(calls, key=lambda k: -calls[k]):
        if name in ("config", "info", "llen", "ping"):  # this script's own
            continue
        raw = calls[name] / n
        net = max(0.0, calls[name] - idle.get(name, 0) * scale) / n
        total += raw
        total_net += net
        lines.append(f"{name:16} {raw:10.2f} {net:10.2f}  {SOURCE.get(name, '')}")
    lines.append(f"{'all (calls)':16} {total:10.2f} {total_net:10.2f}  "
                 "incl. the commands scripts run")
    summary = {"commands_per_notification": total, "commands_less_idle": total_net}
    for key, label in (("total_commands_processed", "commands processed (Redis 7: scripts' too)"),
                       ("total_reads_processed", "socket reads ~ round trips")):
        if key in m["counters"]:
            raw = m["counters"][key] / n
            net = max(0.0, m["counters"][key] - m["idle_counters"].get(key, 0) * scale) / n
            summary[key] = raw
            summary[f"{key}_less_idle"] = net
            lines.append(f"{label:44} {raw:8.2f} per notification ({net:.2f} less idle)")
    run_us, idle_us = m["counters"]["cpu_us"], m["idle_counters"]["cpu_us"]
    cpu_ms, cpu_net_ms = run_us / 1000 / n, max(0.0, run_us - idle_us * scale) / 1000 / n
    summary["redis_cpu_ms"], summary["redis_cpu_ms_less_idle"] = cpu_ms, cpu_net_ms
    lines.append(f"{'Redis CPU, ms':44} {cpu_ms:8.3f} per notification "
                 f"({cpu_net_ms:.3f} less idle)")
    lines.append(f"({n} notifications in {m['elapsed_s']:.1f} s; idle window "
                 f"{m['idle_s']:.0f} s scaled x{scale:.2f}; {os.cpu_count()} CPUs)")
    return "\n".join(lines), summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--idle-s", type=float, default=5.0)
    args = parser.parse_args()
    with own_redis() as url:
        m = measure(url, args.count, args.idle_s)
    text, summary = report(m)
    print(text)
    print(json.dumps({k: round(v, 3) for k, v in summary.items()}))


if __name__ == "__main__":
    main()
