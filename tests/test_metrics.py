"""/metrics after real traffic through a real worker: the fleet-wide counters move, and
the stream lag, queue depth and circuit state are exposed."""

from __future__ import annotations

import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.admin_server import AdminServer
from tests.helpers import WorkerFactory, fast_retry
from tests.receiver import Receiver

pytestmark = pytest.mark.slow


def scrape(admin: AdminServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(admin.url + "/metrics", timeout=10).text
    samples = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("recnotify_"), family.name
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


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
    pub = workers.publisher()
    for i in range(2):
        pub.publish("RECORDING_STARTED_EVENT", params={"UCID": f"m-{i}"})
    receiver.wait_for(2, lambda r: r.path == "/ok")
    receiver.wait_for(4, lambda r: r.path == "/fail")
    assert len(workers.wait_dead_letters(2, timeout_s=60)) == 2
    after = scrape(admin)
    assert value(after, "recnotify_notifications_total", destination="good",
                 outcome="delivered") == 2
    assert value(after, "recnotify_notifications_total", destination="bad",
                 outcome="retrying") == 2
    assert value(after, "recnotify_notifications_total", destination="bad", outcome="dead") == 2
    assert value(after, "recnotify_retries_total", destination="bad") == 2
    assert value(after, "recnotify_dead_letters_total", destination="bad",
                 reason="exhausted") == 2
    assert value(after, "recnotify_delivery_latency_seconds_count", destination="good") == 2
    assert value(after, "recnotify_delivery_latency_seconds_bucket", destination="good",
                 le="+Inf") == 2
    assert value(after, "recnotify_delivery_latency_seconds_sum", destination="good") > 0
    assert value(after, "recnotify_workers") == 1

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


def test_an_open_circuit_shows_in_the_circuit_state_gauge(
        admin: AdminServer, workers: WorkerFactory, receiver: Receiver) -> None:
    receiver.script("/down", [503])
    workers.configure(
        "destinations:\n"
        f"  - name: down\n    events: all\n    scope: global\n    url: {receiver.url('/down')}\n"
        f"    retry: {fast_retry(max_attempts=3)}\n    circuit: {{failures: 1, reset_s: 30}}\n")
    workers.start()
    assert value(scrape(admin), "recnotify_circuit_state", destination="down") == 0
    workers.publisher().publish("RECORDING_STARTED_EVENT", params={"UCID": "c-1"})
    receiver.wait_for(1, lambda r: r.path == "/down")
    deadline = time.monotonic() + 30
    while value(scrape(admin), "recnotify_circuit_state", destination="down") != 2:
        assert time.monotonic() < deadline, "the circuit never showed as open"
        time.sleep(0.3)
    # And while it is open, the first notification's retry and a new event's notification
    # are both parked (no attempt, reset_s is 30 s): the gauge shows two
    workers.publisher().publish("RECORDING_STARTED_EVENT", params={"UCID": "c-2"})
    deadline = time.monotonic() + 20
    while value(scrape(admin), "recnotify_parked", destination="down") != 2:
        assert time.monotonic() < deadline, "the parked notifications never showed"
        time.sleep(0.3)
    assert len([r for r in receiver.received() if r.path == "/down"]) == 1
