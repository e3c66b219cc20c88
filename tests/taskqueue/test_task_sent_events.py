"""The fan-out's ``task-sent`` events (workers.taskqueue.enqueue.TaskBatch): one PUBLISH
per ``EVENTS_CHUNK`` tasks of an enqueue call, read by Celery's own event receiver (the one
Flower runs) as one ``task-sent`` event per task, on a real Redis."""

from __future__ import annotations

import threading
from typing import Any

import redis
from celery.events.state import State

from workers.config.settings import Settings
from workers.taskqueue.app import create_app
from workers.taskqueue.enqueue import DELIVER_TASK, EVENTS_CHUNK, task_batch


def test_each_enqueued_task_reaches_celerys_event_receiver_as_sent_in_one_publish_per_chunk(
        redis_url: str, key_prefix: str) -> None:
    # Given the app as a worker builds it, and Celery's event receiver listening
    app = create_app(Settings.from_env({"RECNOTIFY_REDIS_URL": redis_url,
                                        "RECNOTIFY_KEY_PREFIX": key_prefix}, discover=False))
    client = redis.Redis.from_url(redis_url)
    state = State()
    count = EVENTS_CHUNK + 5
    seen = threading.Event()

    def on_event(event: dict[str, Any]) -> None:
        state.event(event)
        if len(state.tasks) >= count:
            seen.set()

    with app.connection_for_read() as conn:
        receiver = app.events.Receiver(conn, handlers={"*": on_event})
        listener = threading.Thread(target=receiver.capture,
                                    kwargs={"limit": None, "timeout": 15}, daemon=True)
        listener.start()
        try:
            batch = task_batch(app, client, DELIVER_TASK)
            assert batch.event_channel is not None
            raw = client.pubsub()
            raw.subscribe(batch.event_channel)
            assert raw.get_message(timeout=5) is not None  # the subscription is bound
            # When one call enqueues more tasks than one event message carries
            for _ in range(50):  # the subscription binds asynchronously: resend until seen
                state.clear()
                batch.push([(f"ev-{i}", "dest") for i in range(count)])
                if seen.wait(0.3):
                    break
            rounds = client.llen(batch.queue_key) // count
            messages = []
            while (message := raw.get_message(timeout=1)) is not None:
                messages.append(message)
            raw.close()
        finally:
            receiver.should_stop = True
            listener.join(20)
    # Then every task is known to the receiver as sent, with its id-only arguments
    assert seen.is_set()
    tasks = list(state.tasks.values())
    assert len(tasks) == count
    assert {t.state for t in tasks} == {"PENDING"}
    assert {t.name for t in tasks} == {DELIVER_TASK}
    assert sorted(t.args for t in tasks) == sorted(repr((f"ev-{i}", "dest"))
                                                   for i in range(count))
    # And each call published two messages (EVENTS_CHUNK events at most each), not one
    # per task
    assert rounds >= 1 and len(messages) == 2 * rounds
