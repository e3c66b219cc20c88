"""Ordered destinations, end to end: 3 real worker processes, 200 concurrent recordings,
a receiver that fails the first attempt of some notifications, and a worker killed
midway. Checked from the receiver: every recording's notifications arrive in publish
order with X-Recnotify-Sequence 1..N; an unordered destination next to it gets all."""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tests.helpers import WorkerFactory
from tests.receiver import Received, Receiver

pytestmark = pytest.mark.slow

LIFECYCLE = ["RECORDING_STARTED_EVENT", "SEGMENT_STARTED_EVENT", "RECORDING_PAUSED_EVENT",
             "RECORDING_RESUMED_EVENT", "SEGMENT_ENDED_EVENT", "RECORDING_ENDED_EVENT"]
RECORDINGS = 100


def config(receiver: Receiver) -> str:
    retry = '{"max_attempts": 6, "backoff_s": 0.05, "backoff_max_s": 0.2}'
    # the receiver fails many first attempts on purpose: keep the circuit out of this test
    circuit = '{"failures": 100000}'
    return f"""destinations:
  - name: ordered
    events: all
    scope: global
    url: {receiver.url("/ordered")}
    method: POST
    ordered: true
    retry: {retry}
    circuit: {circuit}
  - name: unordered
    events: all
    scope: global
    url: {receiver.url("/unordered")}
    params: "ucid=%UCID%&e=%EVENT%"
    retry: {retry}
    circuit: {circuit}
"""


def delivered_in_order(requests: list[Received]) -> dict[str, list[tuple[str, int]]]:
    """Per UCID: (event type, sequence) of each notification's first 2xx, in arrival order."""
    seen: set[str] = set()
    per_recording: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for r in requests:
        if r.status != 200 or r.header("webhook-id") in seen:
            continue
        seen.add(r.header("webhook-id") or "")
        body = r.json()
        per_recording[body["params"]["UCID"]].append(
            (body["type"], int(r.header("X-Recnotify-Sequence") or 0)))
        assert body["sequence"] == int(r.header("X-Recnotify-Sequence") or -1)
    return per_recording


def wait_unique(receiver: Receiver, path: str, count: int, timeout_s: float = 150) -> None:
    """Wait until ``count`` distinct notifications got a 2xx at ``path`` (duplicates aside)."""
    deadline = time.monotonic() + timeout_s
    while True:
        ids = {r.header("webhook-id") for r in receiver.received(
            lambda r: r.path == path and r.status == 200)}
        if len(ids) >= count:
            return
        assert time.monotonic() < deadline, f"{path}: {len(ids)} of {count} delivered"
        time.sleep(0.2)


def test_ordered_destination_sees_each_recordings_events_in_publish_order(
        workers: WorkerFactory, receiver: Receiver) -> None:
    rng = random.Random(7)
    failing = {f"call-{i}" for i in rng.sample(range(RECORDINGS), 20)}
    receiver.fail_first = lambda r: r.path == "/ordered" and r.json()["params"]["UCID"] in failing
    workers.configure(config(receiver))
    procs = [workers.start(node=f"ord{i}", concurrency=16) for i in range(3)]
    publisher = workers.publisher()

    def publish_all() -> None:
        for step in LIFECYCLE:
            for i in range(RECORDINGS):
                publisher.publish(step, params={"UCID": f"call-{i}"})

    thread = threading.Thread(target=publish_all)
    thread.start()
    time.sleep(1.0)
    workers.kill(procs[0])  # a worker dies mid-stream
    thread.join()
    total = RECORDINGS * len(LIFECYCLE)
    wait_unique(receiver, "/unordered", total)
    wait_unique(receiver, "/ordered", total)
    ordered = delivered_in_order(receiver.received(lambda r: r.path == "/ordered"))
    assert len(ordered) == RECORDINGS
    for ucid, got in ordered.items():
        assert [t for t, _ in got] == LIFECYCLE, ucid
        assert [s for _, s in got] == list(range(1, len(LIFECYCLE) + 1)), ucid
    first_attempt_failures = [r for r in receiver.received(lambda r: r.path == "/ordered")
                              if r.status == 503]
    assert len(first_attempt_failures) >= 40
    unordered = receiver.received(lambda r: r.path == "/unordered" and r.status == 200)
    assert {r.header("X-Recnotify-Sequence") for r in unordered} == {None}


def hold_a_recording(workers: WorkerFactory, receiver: Receiver, ucid: str) -> None:
    """Given an ordered `hold` destination whose recording waits behind its dead first
    notification (the receiver fails twice, then answers 200)."""
    receiver.script("/held", [500, 500, 200])
    workers.configure(f"""destinations:
  - name: held
    events: all
    scope: global
    url: {receiver.url("/held")}
    params: "e=%EVENT%"
    ordered: true
    on_dead_letter: hold
    retry: {{"max_attempts": 2, "backoff_s": 0.05, "backoff_max_s": 0.1}}
""")
    workers.start()
    publisher = workers.publisher()
    for step in LIFECYCLE[:3]:
        publisher.publish(step, params={"UCID": ucid})
    (letter,) = workers.wait_dead_letters(1)
    assert letter["destination"] == "held" and len(letter["attempts"]) == 2
    time.sleep(1.5)
    assert len(receiver.received()) == 2, "later events wait behind the held dead letter"


def test_hold_keeps_later_notifications_until_the_dead_letter_is_replayed(
        workers: WorkerFactory, receiver: Receiver) -> None:
    hold_a_recording(workers, receiver, "held-call")
    from workers.ops.replay import replay_dead_letters
    from workers.taskqueue.app import create_app
    from workers.taskqueue.enqueue import make_enqueue

    replay_dead_letters(workers.settings, workers.store, workers.redis,
                        make_enqueue(create_app(workers.settings)))
    got = receiver.wait_for(5)
    delivered = [r.query["e"][0] for r in got if r.status == 200]
    assert delivered == LIFECYCLE[:3]
    assert [r.header("X-Recnotify-Sequence") for r in got if r.status == 200] == ["1", "2", "3"]


def test_hold_continues_in_order_once_the_dead_letter_is_purged(
        workers: WorkerFactory, receiver: Receiver) -> None:
    hold_a_recording(workers, receiver, "purged-call")
    # When the dead letter is purged instead of replayed
    from workers.ops.replay import purge_dead_letters
    from workers.taskqueue.app import create_app
    from workers.taskqueue.enqueue import make_enqueue

    assert purge_dead_letters(workers.settings, workers.store, workers.redis,
                              make_enqueue(create_app(workers.settings))) == 1
    # Then the rest of the recording follows, in order, numbered after the dead one
    got = receiver.wait_for(4)
    delivered = [(r.query["e"][0], r.header("X-Recnotify-Sequence")) for r in got
                 if r.status == 200]
    assert delivered == [(LIFECYCLE[1], "2"), (LIFECYCLE[2], "3")]
    assert workers.store.list_dead_letters() == []


def test_after_an_upgrade_brings_a_script_redis_does_not_know_the_next_head_still_goes(
        receiver: Receiver, tmp_path: Path) -> None:
    """Regression: Redis knew the ordering scripts but not (yet) the delivery's own; the
    finish queued behind it ran before the state was written and released nothing. Then
    Redis forgets every script (as after a restart) while the recording goes on."""
    from workers.ops.embedded import EmbeddedRedis
    from workers.state.scripts import sources

    server = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
    factory = WorkerFactory(redis_url=server.url, key_prefix="up:", tmp_path=tmp_path)
    try:
        factory.configure(f"destinations:\n  - name: face\n    preset: face\n"
                          f"    scope: global\n    url: {receiver.url('/Face')}\n")
        for name in ("ordering_finish", "ordering_release", "circuit_admit"):
            factory.redis.script_load(sources()[name])  # what an older version had loaded
        factory.start()
        pub = factory.publisher()
        for kind in ("RECORDING_STARTED_EVENT", "RECORDING_ENDED_EVENT"):
            pub.publish(kind, params={"UCID": "u-upgrade"})
        got = receiver.wait_for(2, timeout_s=10)
        assert [r.query["event"][0] for r in got] == ["AudioRecordingStarted",
                                                      "AudioRecordingEnded"]
        factory.redis.script_flush()
        for kind in ("RECORDING_STARTED_EVENT", "RECORDING_ENDED_EVENT"):
            pub.publish(kind, params={"UCID": "u-flushed"})
        got = receiver.wait_for(4, timeout_s=10)
        assert [r.query["event"][0] for r in got[2:]] == ["AudioRecordingStarted",
                                                          "AudioRecordingEnded"]
    finally:
        factory.stop_all()
        server.stop()
