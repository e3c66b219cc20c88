"""Redis holds work in flight (issue 17): once a notification is finished and the dedupe
window (``RECNOTIFY_DEDUPE_WINDOW_S``, 2 s here) has passed, Redis has nothing of it, and
trace, a retry and a dead-letter replay still work from the database's copy. Real Redis,
real ``recnotify worker``, real receiver."""

from __future__ import annotations

import json
import time

import pytest

from tests.helpers import WorkerFactory
from tests.receiver import Receiver
from workers.delivery.attempt import LOCK_MARGIN_S
from workers.http.request import notification_id
from workers.ops.replay import replay_dead_letters
from workers.ops.tracing import event_ids_for_ucid, trace_event
from workers.taskqueue.app import create_app
from workers.taskqueue.enqueue import make_enqueue

pytestmark = pytest.mark.slow

WINDOW_S = "2"


def destination(url: str, **retry: float) -> str:
    policy = {"max_attempts": 3, "backoff_s": 0.05, "backoff_max_s": 0.1, **retry}
    return ("destinations:\n  - name: crm\n    preset: json\n    scope: global\n"
            f"    url: '{url}'\n    retry: {json.dumps(policy)}\n")


def keys_about(workers: WorkerFactory, event_id: str, ucid: str) -> list[bytes]:
    keys = workers.settings.keys
    nid = notification_id(event_id, "crm")
    names = [keys.event(event_id), keys.notification(nid), keys.notification_log(nid),
             keys.lock(nid)]
    return [name.encode() for name in names if workers.redis.exists(name)]


def wait_forgotten(workers: WorkerFactory, event_id: str, ucid: str,
                   timeout_s: float = 15) -> None:
    """Redis forgets all of it after the window, but for a delivered notification's lock,
    which its delivery leaves to expire: that one must be on its way out, with a TTL
    within the destination's timeout (10 s) + LOCK_MARGIN_S."""
    lock = workers.settings.keys.lock(notification_id(event_id, "crm")).encode()
    deadline = time.monotonic() + timeout_s
    while left := [key for key in keys_about(workers, event_id, ucid) if key != lock]:
        assert time.monotonic() < deadline, f"Redis still holds {left}"
        time.sleep(0.2)
    ttl_ms = workers.redis.pttl(lock)
    assert ttl_ms == -2 or 0 < ttl_ms <= (10 + LOCK_MARGIN_S) * 1000, ttl_ms


def test_after_the_dedupe_window_redis_forgets_a_delivered_notification_and_trace_reads_the_database(  # noqa: E501
        workers: WorkerFactory, receiver: Receiver) -> None:
    workers.configure(destination(receiver.url("/crm")))
    workers.start(RECNOTIFY_DEDUPE_WINDOW_S=WINDOW_S)
    event_id = workers.publisher().publish("RECORDING_STARTED_EVENT", params={"UCID": "c-1"})
    (got,) = receiver.wait_for(1)
    assert got.json()["id"] == event_id
    wait_forgotten(workers, event_id, "c-1")
    # nothing of it is left in Redis, yet trace tells the whole story from the database
    assert event_ids_for_ucid(workers.settings, "c-1") == [event_id]
    traced = trace_event(workers.settings, event_id)
    assert traced["type"] == "RECORDING_STARTED_EVENT"
    assert traced["event"]["params"] == {"UCID": "c-1"}
    (item,) = traced["notifications"]
    assert item["state"] == "delivered"
    assert [(a["attempt"], a["status"]) for a in item["attempts"]] == [(1, 200)]


def test_a_retry_after_redis_forgot_the_event_sends_the_database_copy_unchanged(
        workers: WorkerFactory, receiver: Receiver) -> None:
    # the second attempt comes 8 s after the first, when the event's Redis copy is gone
    receiver.script("/crm", [503, 200])
    workers.configure(destination(receiver.url("/crm"), backoff_s=8, backoff_max_s=8))
    workers.start(RECNOTIFY_DEDUPE_WINDOW_S=WINDOW_S)
    event_id = workers.publisher().publish("RECORDING_STARTED_EVENT", params={"UCID": "c-2"})
    first = receiver.wait_for(1)[0]
    deadline = time.monotonic() + 10
    while workers.redis.exists(workers.settings.keys.event(event_id)):
        assert time.monotonic() < deadline, "the event's copy outlived the dedupe window"
        time.sleep(0.1)
    assert len(receiver.received()) == 1, "the retry came before the copy expired"
    second = receiver.wait_for(2, timeout_s=30)[1]
    assert (first.status, second.status) == (503, 200)
    assert second.body == first.body
    assert second.header("webhook-id") == first.header("webhook-id")
    assert workers.store.list_dead_letters() == []


def test_a_dead_letter_replayed_after_the_window_arrives_under_its_first_id(
        workers: WorkerFactory, receiver: Receiver) -> None:
    receiver.script("/crm", [500])
    workers.configure(destination(receiver.url("/crm")))
    workers.start(RECNOTIFY_DEDUPE_WINDOW_S=WINDOW_S)
    event_id = workers.publisher().publish("RECORDING_STARTED_EVENT", params={"UCID": "c-3"})
    workers.wait_dead_letters(1)
    first = receiver.received()[0]
    wait_forgotten(workers, event_id, "c-3")
    receiver.script("/crm", [200])
    replayed = replay_dead_letters(workers.settings, workers.store, workers.redis,
                                   make_enqueue(create_app(workers.settings)))
    assert replayed == 1
    last = receiver.wait_for(4)[-1]
    assert last.header("webhook-id") == first.header("webhook-id")
    assert last.body == first.body


def test_an_id_reused_after_the_window_is_still_refused_and_the_first_content_kept(
        workers: WorkerFactory, receiver: Receiver) -> None:
    workers.configure(destination(receiver.url("/crm")))
    workers.start(RECNOTIFY_DEDUPE_WINDOW_S=WINDOW_S)
    event_id = workers.publisher().publish("RECORDING_STARTED_EVENT", params={"UCID": "c-4"})
    (first,) = receiver.wait_for(1)
    wait_forgotten(workers, event_id, "c-4")
    # the same id, other content, once Redis has forgotten the id: the database has not
    reused = {"id": event_id, "type": "RECORDING_ENDED_EVENT", "params": {"UCID": "c-5"}}
    workers.redis.xadd(workers.settings.keys.events, {"event": json.dumps(reused)})
    (letter,) = workers.wait_dead_letters(1)
    assert letter["reason"].startswith(f"id reused with different content: event {event_id}")
    time.sleep(1.0)
    assert len(receiver.received()) == 1, "the reused id was delivered"
    traced = trace_event(workers.settings, event_id)
    assert traced["type"] == "RECORDING_STARTED_EVENT"
    assert traced["event"]["params"] == {"UCID": "c-4"}
    kept = workers.redis.get(workers.settings.keys.event(event_id))
    assert kept is None or json.loads(kept)["type"] == "RECORDING_STARTED_EVENT"
    assert first.json()["type"] == "RECORDING_STARTED_EVENT"
