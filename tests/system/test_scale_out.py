"""Scale-out: three worker processes share one Redis; losing one loses no notification.

Three ``recnotify worker`` processes with distinct node names consume one stream
while a steady stream of events is published; one of them is SIGKILLed for good
in the middle, with work in flight. Every notification still reaches the receiver,
delivered by the two that remain: the dead consumer's stream entries are claimed
(``XAUTOCLAIM``) and the watchdog enqueues its Celery tasks again (kombu's ack
emulation is off: workers/taskqueue/app.py).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from tests.helpers import WorkerFactory
from tests.receiver import Receiver
from workers.http.request import notification_id

pytestmark = pytest.mark.slow

EVENTS = 150
DESTINATIONS = ("crm", "face")
RATE_PER_S = 30.0


def node(name: str) -> str:
    return f"{os.uname().nodename}-{name}"


def test_killed_worker_process_loses_no_notification(workers: WorkerFactory,
                                                      receiver: Receiver) -> None:
    receiver.delay_s = 0.5  # keeps deliveries in flight on every worker when the kill lands
    workers.configure("destinations:\n" + "".join(
        f"  - name: {name}\n    events: all\n    scope: global\n"
        f"    url: '{receiver.url('/' + name)}'\n    params: 'ucid=%UCID%'\n"
        f"    timeout_s: 2\n"
        for name in DESTINATIONS))
    procs = [workers.start(concurrency=8, node=f"scale-{i}", wait=False) for i in range(3)]
    for i, proc in enumerate(procs):
        workers.wait_ready(proc, node(f"scale-{i}"), timeout_s=60)
    client = workers.redis
    keys = workers.settings.keys
    victim = procs[1]

    publisher = workers.publisher()
    event_ids: list[str] = []
    published_half = threading.Event()

    def publish_steadily() -> None:
        for i in range(EVENTS):
            event_ids.append(publisher.publish("RECORDING_STARTED_EVENT",
                                               params={"UCID": f"call-{i}"}))
            if i == EVENTS // 3:
                published_half.set()
            time.sleep(1 / RATE_PER_S)

    producer = threading.Thread(target=publish_steadily)
    producer.start()
    assert published_half.wait(30)
    victim_beat = json.loads(client.get(keys.heartbeat(node("scale-1"))) or b"{}")
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    producer.join(60)
    assert len(event_ids) == EVENTS

    expected = {notification_id(e, d) for e in event_ids for d in DESTINATIONS}
    receiver.wait_for(len(expected), timeout_s=120)
    deadline = time.monotonic() + 120
    while {r.header("webhook-id") for r in receiver.received()} < expected:
        assert time.monotonic() < deadline, "not every notification arrived"
        time.sleep(0.2)
    # Delivered means the attempt's outcome is recorded: the killed worker's attempts in
    # flight never got that far, so the survivors sent those notifications again.
    states: dict[str, bytes | None] = {}
    while time.monotonic() < deadline:
        states = {nid: client.hget(keys.notification(nid), "state") for nid in expected}
        if set(states.values()) == {b"delivered"}:
            break
        time.sleep(0.5)
    assert set(states.values()) == {b"delivered"}, "every notification ends delivered"
    sent = [r.header("webhook-id") for r in receiver.received()]
    assert len(sent) > len(set(sent)) >= len(expected), "in-flight work was sent again"
    assert victim.returncode == -signal.SIGKILL
    assert all(p.poll() is None for p in (procs[0], procs[2]))

    # Each node consumed the shared stream under its own name; the survivors did the rest.
    assert victim_beat.get("dispatched", 0) > 0, "the killed worker had taken work"
    beats = {n: json.loads(client.get(keys.heartbeat(node(n))) or b"{}")
             for n in ("scale-0", "scale-2")}
    assert all(b["dispatched"] > 0 for b in beats.values()), beats
    consumers = {c["name"].decode() for c in client.xinfo_consumers(keys.events, keys.group)}
    assert {node("scale-0"), node("scale-1"), node("scale-2")} <= consumers
    left = client.xpending_range(keys.events, keys.group, min="-", max="+", count=10,
                                 consumername=node("scale-1"))
    assert left == [], "the dead consumer's stream entries were taken over"
