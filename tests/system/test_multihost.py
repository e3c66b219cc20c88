"""Several hosts, for real (issue 17): a worker host dies and nothing is lost.

Five network namespaces on a private /24 behind a bridge (tests/netns.py): a Redis host
(its own ``redis-server`` bound to its address), two worker hosts each running two
``recnotify worker --processes 1`` against that Redis and ONE shared SQLite destination
database (a file: the namespaces share the filesystem), and a receiver host recording
every notification with the address that sent it. The test process publishes a steady
stream of events from the root namespace (through its own leg on the bridge) to one
destination, restricted to the test's subnet by ``allow_cidrs``.

Mid-run worker host A dies as a host dies: its link goes down first (so no FIN or RST
ever reaches Redis or the receiver: its connections stay half-open on their side), then
every process in its namespace is SIGKILLed. Checks, from the receiver's side:

- every published event's notification arrived (lost == 0); duplicates are counted;
- every notification arrived within 2 minutes of its publication (SPEC 6), and
  specifically those that host A held at the kill (its attempts in flight, its
  prefetched Celery tasks, its consumers' unacknowledged stream entries, read from
  Redis) were delivered by host B within that bound.

Recovery is the product's own, with its default bounds (lock expiry = timeout + 35 s,
watchdog, visibility timeout 100 s, stream claim after 60 s): nothing is tuned. The
figures are printed (run with ``-s``). ``RECNOTIFY_MULTIHOST_LONG=1`` publishes for
5 minutes instead of 40 s and kills at a third of the run.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from producer import Publisher
from tests.helpers import ROOT, TEST_SECRET_KEY, stop_process
from tests.netns import Host, Network, missing, read_received
from workers.config.settings import Settings
from workers.destinations import load_file
from workers.http.request import notification_id
from workers.store.database import Store

LONG = os.environ.get("RECNOTIFY_MULTIHOST_LONG") == "1"
RATE_PER_S = 20.0
PUBLISH_S = 300.0 if LONG else 40.0
KILL_AT_S = PUBLISH_S / 3
BOUND_S = 120.0  # SPEC 6: late by at most 2 minutes after any single fault
RECEIVER_DELAY_S = 0.5  # keeps attempts in flight on every worker when the kill lands
RECEIVER_PORT = 8000
KEY_PREFIX = "rnmulti:"
DESTINATION = "hook"
VENV_BIN = Path(sys.executable).parent

_missing = missing("redis-server")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(PUBLISH_S + BOUND_S + 150),
    pytest.mark.skipif(_missing is not None, reason=f"several hosts as network namespaces: "
                                                    f"{_missing}"),
]


@dataclass
class Cluster:
    tmp: Path
    net: Network
    redis_host: Host
    receiver_host: Host
    worker_hosts: list[Host]
    settings: Settings
    workers: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)

    @property
    def redis_url(self) -> str:
        return f"redis://{self.redis_host.address}:6379/0"

    @property
    def received_path(self) -> Path:
        return self.tmp / "received.jsonl"

    def worker_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECNOTIFY_")}
        env.update(self.settings.to_env())  # the product's defaults for every bound
        env.update({"PYTHONPATH": str(ROOT), "RECNOTIFY_ALLOW_CIDRS": str(self.net.subnet)})
        return env

    def start_workers(self, host: Host, count: int = 2) -> None:
        for i in range(count):
            node = f"{host.name}-w{i}"
            proc = host.start([str(VENV_BIN / "recnotify"), "worker", "--processes", "1",
                               "-c", "16", "--node-name", node],
                              log=self.tmp / f"worker-{node}.log", env=self.worker_env(),
                              cwd=ROOT)
            self.workers.setdefault(host.name, []).append((node, proc))

    def wait_workers_ready(self, client: redis.Redis, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        for nodes in self.workers.values():
            for node, proc in nodes:
                while not client.exists(self.settings.keys.heartbeat(node)):
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError(f"worker {node} not ready:\n"
                                             f"{Path(proc.log_path).read_text()[-3000:]}")
                    time.sleep(0.2)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    net = Network()
    try:
        redis_host = net.add_host("redis")
        worker_hosts = [net.add_host("a"), net.add_host("b")]
        receiver_host = net.add_host("recv")
        settings = Settings.from_env({}, discover=False,
                                     redis_url=f"redis://{redis_host.address}:6379/0",
                                     key_prefix=KEY_PREFIX, data_dir=tmp_path / "data",
                                     secret_key=TEST_SECRET_KEY)
        yield Cluster(tmp_path, net, redis_host, receiver_host, worker_hosts, settings)
    finally:
        for host in net.hosts:  # a clean stop for the survivors, then the namespaces go
            for proc in host.procs:
                stop_process(proc, 15)
        net.close()


def _unacked_notifications(client: redis.Redis) -> set[str]:
    """Notification ids of the Celery messages delivered to a worker and not acknowledged."""
    found: set[str] = set()
    for raw in client.hvals(f"{KEY_PREFIX}unacked"):
        try:
            message = json.loads(raw)[0]
            body = message["body"]
            if message.get("properties", {}).get("body_encoding") == "base64":
                body = base64.b64decode(body)
            args = json.loads(body)[0]
            found.add(notification_id(args[0], args[1]))
        except (ValueError, KeyError, IndexError, TypeError):
            continue
    return found


def _locked_notifications(client: redis.Redis) -> set[str]:
    prefix = f"{KEY_PREFIX}lock:"
    return {key.decode()[len(prefix):] for key in client.scan_iter(match=prefix + "*",
                                                                  count=1000)}


def _pending_notifications(client: redis.Redis, settings: Settings,
                           consumers: list[str]) -> set[str]:
    """Notification ids of the stream entries these consumers read and never acknowledged."""
    keys = settings.keys
    found: set[str] = set()
    for consumer in consumers:
        pending = client.xpending_range(keys.events, keys.group, "-", "+", 10000,
                                        consumername=consumer)
        for entry in pending:
            for _, fields in client.xrange(keys.events, entry["message_id"],
                                           entry["message_id"]):
                event = json.loads(fields[b"event"])
                found.add(notification_id(event["id"], DESTINATION))
    return found


def test_a_dead_worker_host_loses_no_notification(cluster: Cluster) -> None:
    net, tmp = cluster.net, cluster.tmp
    host_a, host_b = cluster.worker_hosts
    # Given a Redis host and a receiver host, each serving on its own address
    cluster.redis_host.start(["redis-server", "--bind", cluster.redis_host.address, "--port",
                              "6379", "--save", "", "--appendonly", "no", "--protected-mode",
                              "no", "--dir", str(tmp)], log=tmp / "redis.log")
    cluster.receiver_host.start([sys.executable, "-m", "tests.netns", "receive", "--bind",
                                 cluster.receiver_host.address, "--port", str(RECEIVER_PORT),
                                 "--out", str(cluster.received_path), "--delay",
                                 str(RECEIVER_DELAY_S)], log=tmp / "receiver.log", cwd=ROOT)
    client = redis.Redis.from_url(cluster.redis_url, socket_timeout=10)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline, (tmp / "redis.log").read_text()
            time.sleep(0.1)
    # And one destination on the receiver host, in the one SQLite database all share
    cluster.settings.data_dir.mkdir(parents=True)
    store = Store(cluster.settings.effective_database_url, TEST_SECRET_KEY)
    store.upgrade()
    url = f"http://{cluster.receiver_host.address}:{RECEIVER_PORT}/hook"
    store.import_destinations(load_file(
        f"destinations:\n  - name: {DESTINATION}\n    events: all\n    scope: global\n"
        f"    url: '{url}'\n    params: 'ucid=%UCID%'\n"
        f"    allow_cidrs: ['{net.subnet}']\n", existing={}))
    # And two worker hosts, two worker processes each
    for host in cluster.worker_hosts:
        cluster.start_workers(host)
    cluster.wait_workers_ready(client)
    a_nodes = [node for node, _ in cluster.workers["a"]]

    # When events are published steadily from the root namespace
    publisher = Publisher(cluster.redis_url, key_prefix=KEY_PREFIX)
    published: dict[str, float] = {}  # event id -> time.time() just before publish
    errors: list[BaseException] = []
    count = int(PUBLISH_S * RATE_PER_S)

    def publish_steadily() -> None:
        start = time.monotonic()
        try:
            for i in range(count):
                pause = start + i / RATE_PER_S - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                at = time.time()
                published[publisher.publish("RECORDING_STARTED_EVENT",
                                            params={"UCID": f"call-{i}"})] = at
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    producer = threading.Thread(target=publish_steadily, daemon=True)
    producer.start()
    time.sleep(KILL_AT_S)
    # And worker host A dies: link down (no FIN/RST leaves it), every process SIGKILLed
    locks_before, unacked_before = _locked_notifications(client), _unacked_notifications(client)
    host_a.link_down()
    killed_at = time.time()
    killed = host_a.kill_all()
    received_at_kill = {r["id"] for r in read_received(cluster.received_path)}
    published_at_kill = dict(published)
    # What A held: its locks and unacknowledged messages outlive a few seconds in which
    # every live attempt (0.5 s at the receiver) ends; its consumers' entries stay pending.
    time.sleep(5)
    held = (locks_before & _locked_notifications(client)) | \
        (unacked_before & _unacked_notifications(client)) | \
        _pending_notifications(client, cluster.settings, a_nodes)
    assert [n for n, p in cluster.workers["b"] if p.poll() is not None] == []

    producer.join(PUBLISH_S + 30)
    assert not errors, errors
    assert len(published) == count
    expected = {notification_id(e, DESTINATION): at for e, at in published.items()}

    # Then every notification arrives, those A held sent again by host B
    def first_arrivals(rows: list[dict[str, Any]], *, from_b_after_kill: bool
                       ) -> dict[str, float]:
        first: dict[str, float] = {}
        for row in rows:
            if from_b_after_kill and (row["peer"] != host_b.address or row["at"] < killed_at):
                continue
            if row["id"] not in first or row["at"] < first[row["id"]]:
                first[row["id"]] = row["at"]
        return first

    deadline = time.monotonic() + BOUND_S + 15
    while True:
        rows = read_received(cluster.received_path)
        first = first_arrivals(rows, from_b_after_kill=False)
        resumed = first_arrivals(rows, from_b_after_kill=True)
        missing_ids = set(expected) - set(first)
        not_resumed = held - set(resumed)
        if (not missing_ids and not not_resumed) or time.monotonic() > deadline:
            break
        time.sleep(1)
    for host in cluster.worker_hosts:  # the logs of every worker, for a failure's story
        for node, proc in cluster.workers[host.name]:
            shutil.copy(proc.log_path, tmp / f"kept-{node}.log")

    lateness = {nid: first[nid] - at for nid, at in expected.items() if nid in first}
    in_flight = {notification_id(e, DESTINATION) for e in published_at_kill} - received_at_kill
    held_lateness = {nid: resumed[nid] - expected[nid] for nid in held if nid in resumed}
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["id"]] = counts.get(row["id"], 0) + 1
    figures = {
        "published": count,
        "killed_host": host_a.name,
        "killed_pids": len(killed),
        "kill_at_s": round(KILL_AT_S, 1),
        "lost": len(missing_ids),
        "received_requests": len(rows),
        "duplicates": sum(c - 1 for c in counts.values()),
        "unexpected_ids": len(set(counts) - set(expected)),
        "max_lateness_s": round(max(lateness.values(), default=0.0), 1),
        "unreceived_at_kill": len(in_flight),
        "unreceived_at_kill_max_lateness_s": round(
            max((lateness[n] for n in in_flight if n in lateness), default=0.0), 1),
        "held_by_killed_host": len(held),
        "held_locks": len(locks_before & held),
        "held_not_resumed": len(not_resumed),
        "held_max_lateness_s": round(max(held_lateness.values(), default=0.0), 1),
        "held_min_lateness_s": round(min(held_lateness.values(), default=0.0), 1),
        "long": LONG,
    }
    print("\nmultihost " + " ".join(f"{k}={v}" for k, v in figures.items()))
    (tmp / "figures.json").write_text(json.dumps(figures))

    assert figures["lost"] == 0, (figures, sorted(missing_ids)[:10])
    assert figures["unexpected_ids"] == 0, figures
    assert held, f"host A held nothing at the kill: the test proved nothing ({figures})"
    assert not_resumed == set(), (figures, sorted(not_resumed)[:10])
    assert figures["max_lateness_s"] <= BOUND_S, figures
    assert figures["held_max_lateness_s"] <= BOUND_S, figures
