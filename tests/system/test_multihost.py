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
  prefetched Celery tasks, as its workers answered Celery's ``inspect`` just before,
  its consumers' unacknowledged stream entries) were delivered by host B within that
  bound. Also counted: notifications Redis
  handed to A's half-open connections just after it died (a blocked BRPOP of the
  Celery queue, a blocked XREADGROUP), which only the watchdog and the stream claim
  find again.

Recovery is the product's own, with its default bounds (lock expiry = timeout + 35 s,
watchdog after 60 s, stream claim after 60 s): nothing is tuned. The
figures are printed (run with ``-s``) and written to ``figures.json`` in the test's
tmp dir. ``RECNOTIFY_MULTIHOST_LONG=1`` publishes for 5 minutes instead of 40 s: host A
dies at 60 s, comes back at 150 s (link up, fresh workers), host B dies at 190 s.
"""

from __future__ import annotations

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
from tests.netns import Host, Network, ip, missing, read_received
from workers.config.keys import Keys
from workers.config.settings import Settings
from workers.destinations import load_file
from workers.http.request import notification_id
from workers.state.codec import as_text
from workers.store.database import Store
from workers.taskqueue.app import create_app

LONG = os.environ.get("RECNOTIFY_MULTIHOST_LONG") == "1"
RATE_PER_S = 20.0
PUBLISH_S = 300.0 if LONG else 40.0
# (what, worker host, seconds after publishing starts): one kill, or in the long run a
# kill, the host's return and the other host's kill, each more than 2 minutes apart.
SCHEDULE: list[tuple[str, str, float]] = (
    [("kill", "a", 60.0), ("revive", "a", 150.0), ("kill", "b", 190.0)] if LONG
    else [("kill", "a", PUBLISH_S / 3)])
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

    def start_workers(self, host: Host, count: int = 2, generation: int = 1) -> None:
        for i in range(count):
            node = f"{host.name}-w{i}" + (f"-{generation}" if generation > 1 else "")
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
        # A clean stop for the survivors (workers before the Redis they flush to), then
        # the namespaces go with whatever is left in them.
        for host in sorted(net.hosts, key=lambda h: {"recv": 1, "redis": 2}.get(h.name, 0)):
            for proc in host.procs:
                stop_process(proc, 15)
        net.close()


def _locked(client: redis.Redis, keys: Keys) -> set[str]:
    """The notifications whose lock is held and whose state is not final: attempts in
    flight (a delivered notification's lock is left to expire; KEYS is fine on the
    test's own small Redis)."""
    prefix = len(keys.lock(""))
    nids = [as_text(key)[prefix:] for key in client.keys(keys.lock("*"))]
    pipe = client.pipeline(transaction=False)
    for nid in nids:
        pipe.hget(keys.notification(nid), "state")
    return {nid for nid, state in zip(nids, pipe.execute(), strict=True)
            if state not in (b"delivered", b"dead")}


def _taken(cluster: Cluster, nodes: list[str]) -> set[str]:
    """The notifications whose Celery message the workers ``nodes`` have taken and not
    started, or hold for a countdown, as they answer Celery's own ``inspect`` (kombu's
    ack emulation is off, so Redis has no record of them: workers/taskqueue/app.py)."""
    app = create_app(cluster.settings)
    try:
        inspect = app.control.inspect(destination=[f"recnotify@{n}" for n in nodes],
                                      timeout=3)
        replies = [inspect.reserved() or {}, inspect.scheduled() or {}]
    finally:
        app.close()
    taken: set[str] = set()
    for reply in replies:
        for tasks in reply.values():
            for task in tasks:
                request = task.get("request", task)  # scheduled: {"eta", "request"}
                args = request.get("args") or []
                if len(args) == 2:
                    taken.add(notification_id(args[0], args[1]))
    return taken


def _pending_notifications(client: redis.Redis, settings: Settings,
                           consumers: list[str]) -> set[str]:
    """Notification ids of the stream entries these consumers read and never acknowledged."""
    keys = settings.keys
    found: set[str] = set()
    for consumer in consumers:
        pending = client.xpending_range(keys.events, keys.group, "-", "+", 10000,
                                        consumername=consumer)
        for entry in pending:
            entries: Any = client.xrange(keys.events, entry["message_id"], entry["message_id"])
            for _, fields in entries:
                event = json.loads(fields[b"event"])
                found.add(notification_id(event["id"], DESTINATION))
    return found


def test_a_dead_worker_host_loses_no_notification(cluster: Cluster) -> None:
    net, tmp = cluster.net, cluster.tmp
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

    # When events are published steadily from the root namespace
    publisher = Publisher(cluster.redis_url, key_prefix=KEY_PREFIX)
    published: dict[str, float] = {}  # event id -> time.time() just before publish
    errors: list[BaseException] = []
    count = int(PUBLISH_S * RATE_PER_S)
    start = time.monotonic()

    def publish_steadily() -> None:
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
    # And mid-run a worker host dies (the long run: it comes back, then the other dies)
    hosts = {host.name: host for host in cluster.worker_hosts}
    kills: list[Kill] = []
    for step, name, at_s in SCHEDULE:
        time.sleep(max(0.0, start + at_s - time.monotonic()))
        if step == "kill":
            kills.append(kill_host(cluster, client, hosts[name], published))
        else:
            revive_host(cluster, client, hosts[name])
    producer.join(PUBLISH_S + 30)
    assert not errors, errors
    assert len(published) == count
    expected = {notification_id(e, DESTINATION): at for e, at in published.items()}

    # Then every notification arrives, and what each dead host held is sent by another
    deadline = time.monotonic() + BOUND_S + 15
    while True:
        rows = read_received(cluster.received_path)
        first = first_arrivals(rows)
        missing_ids = set(expected) - set(first)
        not_resumed = set().union(*(k.held - set(k.resumed(rows)) for k in kills))
        if (not missing_ids and not not_resumed) or time.monotonic() > deadline:
            break
        time.sleep(1)
    for nodes in cluster.workers.values():  # every worker's log, for a failure's story
        for node, proc in nodes:
            shutil.copy(proc.log_path, tmp / f"kept-{node}.log")

    lateness = {nid: first[nid] - at for nid, at in expected.items() if nid in first}
    held_all = set().union(*(k.held for k in kills))
    late_other = {n for n, late in lateness.items() if late > 10 and n not in held_all}
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["id"]] = counts.get(row["id"], 0) + 1
    figures: dict[str, Any] = {
        "published": count,
        "lost": len(missing_ids),
        "received_requests": len(rows),
        "duplicates": sum(c - 1 for c in counts.values()),
        "unexpected_ids": len(set(counts) - set(expected)),
        "max_lateness_s": round(max(lateness.values(), default=0.0), 1),
        "late_over_10s_not_held": len(late_other),
        "long": LONG,
    }
    for number, kill in enumerate(kills, 1):
        figures.update({f"kill{number}_{key}": value
                        for key, value in kill.figures(rows, expected, lateness).items()})
    print("\nmultihost " + " ".join(f"{k}={v}" for k, v in figures.items()))
    (tmp / "figures.json").write_text(json.dumps(figures))

    assert figures["lost"] == 0, (figures, sorted(missing_ids)[:10])
    assert figures["unexpected_ids"] == 0, figures
    assert all(k.held for k in kills), f"a killed host held nothing: proved nothing ({figures})"
    assert not_resumed == set(), (figures, sorted(not_resumed)[:10])
    assert figures["max_lateness_s"] <= BOUND_S, figures
    for number in range(1, len(kills) + 1):
        assert figures[f"kill{number}_held_max_lateness_s"] <= BOUND_S, figures


def first_arrivals(rows: list[dict[str, Any]]) -> dict[str, float]:
    first: dict[str, float] = {}
    for row in rows:
        if row["id"] not in first or row["at"] < first[row["id"]]:
            first[row["id"]] = row["at"]
    return first


@dataclass
class Kill:
    """One worker host's death, and what it held at that moment."""

    host: Host
    at: float  # time.time()
    pids: list[int]
    attempts: set[str]  # locks it held: attempts in flight
    prefetched: set[str]  # Celery messages it had taken and not acknowledged
    stream_entries: set[str]  # entries its consumers read and never acknowledged
    received_before: set[str]
    published_before: set[str]

    @property
    def held(self) -> set[str]:
        return self.attempts | self.prefetched | self.stream_entries

    def resumed(self, rows: list[dict[str, Any]]) -> dict[str, float]:
        """First arrival of each notification from another host after the kill."""
        return first_arrivals([r for r in rows
                               if r["peer"] != self.host.address and r["at"] >= self.at])

    def figures(self, rows: list[dict[str, Any]], expected: dict[str, float],
                lateness: dict[str, float]) -> dict[str, Any]:
        resumed = self.resumed(rows)
        held_lateness = [resumed[n] - expected[n] for n in self.held if n in resumed]
        unreceived = self.published_before - self.received_before
        # Published just after the kill and late: handed by Redis to the dead host's
        # half-open connections (a blocked BRPOP or XREADGROUP), found again by the
        # watchdog or the stream claim. Redis cannot tell such a host from a slow one.
        swallowed = [late for n, late in lateness.items()
                     if late > 10 and n not in self.held and n not in self.published_before
                     and self.at <= expected[n] <= self.at + 10]
        return {
            "host": self.host.name,
            "at_s": round(self.at - min(expected.values()), 1),
            "killed_pids": len(self.pids),
            "held": len(self.held),
            "held_attempts": len(self.attempts),
            "held_prefetched": len(self.prefetched),
            "held_stream_entries": len(self.stream_entries),
            "held_received_before_kill": len(self.held & self.received_before),
            "held_not_resumed": len(self.held - set(resumed)),
            "held_min_lateness_s": round(min(held_lateness, default=0.0), 1),
            "held_max_lateness_s": round(max(held_lateness, default=0.0), 1),
            "held_last_resumed_after_kill_s": round(
                max((resumed[n] - self.at for n in self.held if n in resumed), default=0.0), 1),
            "handed_to_dead_connections": len(swallowed),
            "handed_to_dead_connections_max_lateness_s": round(max(swallowed, default=0.0), 1),
            "unreceived_at_kill": len(unreceived),
            "unreceived_at_kill_max_lateness_s": round(
                max((lateness[n] for n in unreceived if n in lateness), default=0.0), 1),
        }


def kill_host(cluster: Cluster, client: redis.Redis, host: Host,
              published: dict[str, float]) -> Kill:
    """Link down first (no FIN or RST leaves the host), then SIGKILL all in it."""
    nodes = [node for node, _ in cluster.workers[host.name]]
    taken_before = _taken(cluster, nodes)
    locks_before = _locked(client, cluster.settings.keys)
    host.link_down()
    at = time.time()
    pids = host.kill_all()
    received = {r["id"] for r in read_received(cluster.received_path)}
    published_before = {notification_id(e, DESTINATION) for e in list(published)}
    # Its locks outlive a few seconds in which every live attempt elsewhere (0.5 s at
    # the receiver) ends; its consumers' entries stay pending.
    time.sleep(5)
    attempts = locks_before & _locked(client, cluster.settings.keys)
    prefetched = taken_before - attempts - received  # not those it delivered before
    stream_entries = _pending_notifications(client, cluster.settings, nodes)
    alive = [node for name, procs in cluster.workers.items() if name != host.name
             for node, proc in procs if proc.poll() is not None]
    assert alive == [], f"workers of other hosts died: {alive}"
    return Kill(host, at, pids, attempts, prefetched, stream_entries, received,
                published_before)


def revive_host(cluster: Cluster, client: redis.Redis, host: Host) -> None:
    """The host comes back: link up, fresh worker processes (new names, as after a boot)."""
    ip("-n", host.netns, "link", "set", "eth0", "up")
    cluster.workers.pop(host.name, None)
    cluster.start_workers(host, generation=2)
    cluster.wait_workers_ready(client)
