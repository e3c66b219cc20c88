"""A delivered notification's task message is acknowledged by its delivery's last script
(workers.taskqueue.tuning.early_acks): nothing is left in kombu's unacked bookkeeping, no
message comes back, and the paths that do not deliver still ack the usual way."""

from __future__ import annotations

import time

from tests.helpers import WorkerFactory
from tests.receiver import Receiver


def _unacked(workers: WorkerFactory) -> tuple[int, int]:
    prefix, client = workers.settings.key_prefix, workers.redis
    return int(client.hlen(f"{prefix}unacked")), int(client.zcard(f"{prefix}unacked_index"))


def test_delivered_messages_leave_no_unacked_bookkeeping_and_are_not_redelivered(
        workers: WorkerFactory, receiver: Receiver) -> None:
    receiver.script("/flaky", [503, 200])  # one retry: acked by the worker, not early
    workers.configure(
        "destinations:\n"
        f"  - name: ok\n    events: all\n    scope: global\n    url: {receiver.url('/ok')}\n"
        f"  - name: flaky\n    events: all\n    scope: global\n"
        f"    url: {receiver.url('/flaky')}\n"
        "    retry: {max_attempts: 3, backoff_s: 0.1, backoff_max_s: 0.1}\n")
    # a visibility timeout shorter than the wait below: a message left unacked comes back
    workers.start(RECNOTIFY_VISIBILITY_TIMEOUT_S="10")
    pub = workers.publisher()
    for i in range(20):
        pub.publish("RECORDING_STARTED_EVENT", params={"UCID": f"u-{i}"})
    receiver.wait_for(20, lambda r: r.path == "/ok")
    receiver.wait_for(21, lambda r: r.path == "/flaky")
    deadline = time.monotonic() + 10
    while _unacked(workers) != (0, 0) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _unacked(workers) == (0, 0)
    time.sleep(16)  # past the visibility timeout and a restore sweep (every 5 s)
    assert len(receiver.received(lambda r: r.path == "/ok")) == 20
    assert len(receiver.received(lambda r: r.path == "/flaky")) == 21
    assert _unacked(workers) == (0, 0)
