"""/metrics after real traffic through a real worker: the fleet-wide counters move, the
stream lag, queue depth and circuit state are exposed, ``promtool check metrics`` accepts
the page, a deleted destination's series go, and a scrape costs the same number of Redis
round trips for 10 destinations as for 200."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.admin_server import AdminServer
from tests.helpers import WorkerFactory, fast_retry
from tests.receiver import Receiver
from workers import __version__
from workers.config.settings import Settings
from workers.destinations import load_file
from workers.ops.metrics import make_registry
from workers.store.database import Store

pytestmark = pytest.mark.slow


def scrape(admin: AdminServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(admin.url + "/metrics", timeout=10).text
    samples = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("recnotify_"), family.name
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def scrape_once_counted(admin: AdminServer, name: str, expected: float, timeout_s: float = 10,
                        **labels: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A scrape once ``name{labels}`` reads ``expected``: the per-attempt counters reach
    Redis in each worker's next flush, half a second at most (workers.state.counters.Tally)."""
    deadline = time.monotonic() + timeout_s
    while True:
        samples = scrape(admin)
        if value(samples, name, **labels) == expected or time.monotonic() > deadline:
            return samples
        time.sleep(0.1)


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
          **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_counters_move_after_traffic_and_queues_are_measured(
        admin: AdminServer, workers: WorkerFactory, receiver: Receiver) -> None:
    receiver.script("/fail", [500])
    workers.configure(
        "destinations:\n"
        f"  - name: good\n    events: all\n    scope: global\n    url: {receiver.url('/ok')}\n"
        f"  - name: bad\n    events: all\n    scope: global\n    url: {receiver.url('/fail')}\n"
        f"    retry: {fast_retry(max_attempts=2)}\n")
    workers.start()
    before = scrape(admin)
    assert value(before, "recnotify_notifications_total", destination="good",
                 outcome="delivered") == 0
    assert value(before, "recnotify_build_info", version=__version__) == 1
    pub = workers.publisher()
    for i in range(2):
        pub.publish("RECORDING_STARTED_EVENT", params={"UCID": f"m-{i}"})
    receiver.wait_for(2, lambda r: r.path == "/ok")
    receiver.wait_for(4, lambda r: r.path == "/fail")
    assert len(workers.wait_dead_letters(2, timeout_s=60)) == 2
    scrape_once_counted(admin, "recnotify_attempts_total", 2, destination="good")
    after = scrape_once_counted(admin, "recnotify_attempts_total", 4, destination="bad")
    # notifications are counted once, when they end; attempts each time one is made
    assert value(after, "recnotify_notifications_total", destination="good",
                 outcome="delivered") == 2
    assert value(after, "recnotify_notifications_total", destination="bad", outcome="dead") == 2
    assert value(after, "recnotify_notifications_total", destination="bad",
                 outcome="delivered") == 0
    assert value(after, "recnotify_attempts_total", destination="good") == 2
    assert value(after, "recnotify_attempts_total", destination="bad") == 4
    assert value(after, "recnotify_retries_total", destination="bad") == 2
    assert value(after, "recnotify_retries_total", destination="good") == 0
    assert value(after, "recnotify_dead_letters_total", destination="bad",
                 reason="exhausted") == 2
    assert value(after, "recnotify_events_dispatched_total") == 2
    assert value(after, "recnotify_notifications_dispatched_total") == 4
    assert not [key for key in after if key[0] in (
        "recnotify_dispatched_total", "recnotify_parked")
        or ("outcome", "retrying") in key[1]], after
    assert value(after, "recnotify_delivery_latency_seconds_count", destination="good") == 2
    assert value(after, "recnotify_delivery_latency_seconds_bucket", destination="good",
                 le="+Inf") == 2
    assert value(after, "recnotify_delivery_latency_seconds_sum", destination="good") > 0
    assert value(after, "recnotify_workers") == 1
    # promtool (Debian's prometheus package) accepts the real page
    text = requests.get(admin.url + "/metrics", timeout=10).text
    (workers.tmp_path / "metrics.txt").write_text(text)
    checked = promtool_check(text)
    assert checked.returncode == 0 and checked.stdout + checked.stderr == "", checked

    # With the worker stopped: new events wait in the stream, replayed ones in the queue
    workers.stop_all()
    for i in range(3):
        pub.publish("RECORDING_ENDED_EVENT", params={"UCID": f"late-{i}"})
    replayed = admin.call("POST", "/api/dead-letters/replay", json={"destination": "bad"})
    assert replayed.json() == {"replayed": 2}
    deadline = time.monotonic() + 30
    while value(scrape(admin), "recnotify_workers") != 0:  # the heartbeat key expires
        assert time.monotonic() < deadline
        time.sleep(0.5)
    idle = scrape(admin)
    group = workers.settings.keys.group
    assert value(idle, "recnotify_stream_lag", group=group) == 3
    assert value(idle, "recnotify_stream_pending", group=group) == 0
    assert value(idle, "recnotify_delivery_queue_depth") == 2
    assert value(idle, "recnotify_redis_up") == 1
    text = requests.get(admin.url + "/metrics", timeout=10).text
    assert receiver.url() not in text and "127.0.0.1" not in text
    # A deleted destination's series go with it (its counters stay in Redis, unshown)
    assert workers.store.remove("bad")
    deadline = time.monotonic() + 10
    while any(("destination", "bad") in key[1] for key in scrape(admin)):
        assert time.monotonic() < deadline, "the deleted destination's series stayed"
        time.sleep(0.3)
    assert value(scrape(admin), "recnotify_attempts_total", destination="good") == 2


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/usr/bin/promtool", "check", "metrics"], input=text,
                          capture_output=True, text=True, timeout=60)


def test_an_open_circuit_shows_in_the_circuit_state_gauge(
        admin: AdminServer, workers: WorkerFactory, receiver: Receiver) -> None:
    receiver.script("/down", [503])
    workers.configure(
        "destinations:\n"
        f"  - name: down\n    events: all\n    scope: global\n    url: {receiver.url('/down')}\n"
        f"    retry: {fast_retry(max_attempts=3)}\n    circuit: {{failures: 1, reset_s: 30}}\n")
    workers.start()
    closed = scrape(admin)
    assert value(closed, "recnotify_circuit_state", destination="down", state="closed") == 1
    assert value(closed, "recnotify_circuit_state", destination="down", state="open") == 0
    workers.publisher().publish("RECORDING_STARTED_EVENT", params={"UCID": "c-1"})
    receiver.wait_for(1, lambda r: r.path == "/down")
    deadline = time.monotonic() + 30
    while value(scrape(admin), "recnotify_circuit_state", destination="down",
                state="open") != 1:
        assert time.monotonic() < deadline, "the circuit never showed as open"
        time.sleep(0.3)
    # And while it is open, the first notification's retry and a new event's notification
    # are both parked (no attempt, reset_s is 30 s): the gauge shows two
    workers.publisher().publish("RECORDING_STARTED_EVENT", params={"UCID": "c-2"})
    deadline = time.monotonic() + 20
    while value(scrape(admin), "recnotify_parked_notifications", destination="down") != 2:
        assert time.monotonic() < deadline, "the parked notifications never showed"
        time.sleep(0.3)
    assert len([r for r in receiver.received() if r.path == "/down"]) == 1
    opened = scrape(admin)
    assert [state for state in ("closed", "half_open", "open") if value(
        opened, "recnotify_circuit_state", destination="down", state=state) == 1] == ["open"]


class CountingConnection(redis.Connection):
    """A connection that counts its round trips (each send of one or more commands)."""

    sends = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sends += 1
        super().send_packed_command(command, check_health)


def test_a_scrape_costs_the_same_round_trips_for_10_and_200_destinations(
        redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    settings = Settings.from_env({}, redis_url=redis_url, key_prefix=key_prefix,
                                 data_dir=tmp_path)
    store = Store(f"sqlite:///{tmp_path / 'config.db'}")
    store.upgrade()
    pool = redis.ConnectionPool.from_url(redis_url, connection_class=CountingConnection)
    client = redis.Redis(connection_pool=pool)
    registry = make_registry(settings, client, lambda: store)
    seeded = redis.Redis.from_url(redis_url)
    round_trips: dict[int, int] = {}
    for count in (10, 200):
        have = len(store.list_destinations())
        yaml_text = "destinations:\n" + "".join(
            f"  - {{name: d{i:03d}, events: all, scope: global, url: 'https://example.com/'}}\n"
            for i in range(have, count))
        store.import_destinations(load_file(yaml_text, existing={
            d.name: d for d in store.list_destinations()}))
        # real-looking state for every destination: counters, an open circuit, parked ones
        pipe = seeded.pipeline(transaction=False)
        for i in range(count):
            name = f"d{i:03d}"
            pipe.hincrby(settings.keys.metric("notifications"), f"{name}|attempts", 3)
            pipe.hset(settings.keys.circuit(name), "state", "open")
            pipe.zadd(settings.keys.parked(name), {f"e{i}": 1.0})
        pipe.execute()
        generate_latest(registry)  # the first scrape after a change also reads the list
        CountingConnection.sends = 0
        text = generate_latest(registry).decode()
        round_trips[count] = CountingConnection.sends
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for f in text_string_to_metric_families(text) for s in f.samples}
        assert value(samples, "recnotify_circuit_state", destination=f"d{count - 1:03d}",
                     state="open") == 1
        assert value(samples, "recnotify_parked_notifications",
                     destination=f"d{count - 1:03d}") == 1
        assert value(samples, "recnotify_destinations") == count
    print(f"Redis round trips per scrape: {round_trips}")
    assert round_trips[10] == round_trips[200] <= 2, round_trips
    seeded.close()
    client.close()
    store.close()
