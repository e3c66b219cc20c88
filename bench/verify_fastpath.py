"""Check the one-round-trip fan-out (workers.taskqueue.enqueue) against Celery itself.

1. The message and the ``task-sent`` event it writes have exactly the shape Celery's
   ``apply_async`` writes (same keys, same constant values; ids and times differ); the
   event goes in a ``task.multi`` list, as Celery's worker sends its buffered events.
2. A real ``recnotify worker`` runs tasks enqueued this way (the receiver gets them)
   and emits the task events Flower shows (task-sent, -received, -started, -succeeded).

    .venv/bin/python -m bench.verify_fastpath
"""

from __future__ import annotations

import base64
import json
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from tests.helpers import WorkerFactory
from tests.receiver import Receiver
from workers.state.schedule import ENQUEUED_AT_HEADER
from workers.taskqueue.app import create_app
from workers.taskqueue.enqueue import DELIVER_TASK, task_batch

VOLATILE = {"id", "root_id", "correlation_id", "delivery_tag", "reply_to", "uuid", "timestamp",
            "clock", "pid", "hostname", "origin", "utcoffset"}


def _shape(value: Any) -> Any:
    """The message with volatile values blanked and the base64 body decoded."""
    if isinstance(value, dict):
        out = {k: ("*" if k in VOLATILE else _shape(v)) for k, v in value.items()}
        if "body" in value and isinstance(value["body"], str):
            out["body"] = _shape(json.loads(base64.b64decode(value["body"])))
        return out
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return value


def compare_with_celery(factory: WorkerFactory) -> None:
    client = factory.redis
    app = create_app(factory.settings)
    pubsub = client.pubsub()  # type: ignore[no-untyped-call]
    pubsub.psubscribe(f"{factory.key_prefix}*")
    pubsub.get_message(timeout=1)
    app.tasks[DELIVER_TASK].apply_async(("ev-1", "dest-a"))
    task_batch(app, client, DELIVER_TASK).push([("ev-1", "dest-a")])
    queue = factory.settings.keys.deliver_queue
    theirs, ours = (json.loads(m) for m in client.lrange(queue, 0, -1)[::-1])
    events: list[tuple[bytes, Any]] = []
    while len(events) < 2:
        got = pubsub.get_message(timeout=5)
        if got is None:
            raise SystemExit("FAIL: task-sent events missing")
        if got["type"] == "pmessage":
            events.append((got["channel"], json.loads(got["data"])))
    pubsub.close()
    client.delete(queue)
    # recnotify's one header of its own: when the task was enqueued (the watchdog's re-arm)
    assert ENQUEUED_AT_HEADER in ours["headers"], ours["headers"]
    del ours["headers"][ENQUEUED_AT_HEADER]
    assert _shape(theirs) == _shape(ours), (_shape(theirs), _shape(ours))
    # Celery's apply_async publishes one event on task.sent; the batch publishes a list of
    # them on task.multi (the form of Celery's own buffered worker events): the same
    # exchange, and each event in the list of exactly the shape of Celery's.
    (their_channel, their_event), (our_channel, our_events) = events
    assert their_channel.endswith(b"/task.sent") and our_channel.endswith(b"/task.multi"), events
    assert their_channel.removesuffix(b"sent") == our_channel.removesuffix(b"multi"), events
    their_shape, our_shape = _shape(their_event), _shape(our_events)
    assert len(our_shape["body"]) == 1, our_shape
    assert their_shape["body"] == our_shape["body"][0], (their_shape, our_shape)
    for shape in (their_shape, our_shape):
        del shape["body"], shape["properties"]["delivery_info"]["routing_key"]
    assert their_shape == our_shape, (their_shape, our_shape)
    print(f"OK  message and task-sent event identical in shape to Celery's "
          f"(queue {queue}, channels {their_channel.decode()}, {our_channel.decode()})")
    started = time.perf_counter()
    task_batch(app, client, DELIVER_TASK).push([("ev-2", f"d{i}") for i in range(1000)])
    elapsed = time.perf_counter() - started
    print(f"OK  1,000 tasks enqueued in {elapsed * 1000:.0f} ms "
          f"(queue length {client.llen(queue)})")
    client.delete(queue)


def run_on_real_worker(factory: WorkerFactory, receiver: Receiver) -> None:
    factory.configure("destinations:\n  - name: fan-a\n    events: all\n    scope: global\n"
                      f"    url: '{receiver.url('/a')}'\n")
    factory.start(concurrency=8)
    client = factory.redis
    pubsub = client.pubsub()  # type: ignore[no-untyped-call]
    pubsub.psubscribe(f"{factory.key_prefix}/*")
    pubsub.get_message(timeout=1)
    # the consumer fans this event out through make_enqueue -> workers.taskqueue.enqueue
    factory.publisher().publish("RECORDING_STARTED_EVENT", route="r",
                                           params={"UCID": "u-1"})
    receiver.wait_for(1, timeout_s=30)
    seen: dict[str, int] = {}
    deadline = time.monotonic() + 10
    wanted = {"task-sent", "task-received", "task-started", "task-succeeded"}
    while time.monotonic() < deadline and not wanted <= set(seen):
        got = pubsub.get_message(timeout=1)
        if got and got["type"] == "pmessage":
            body = json.loads(base64.b64decode(json.loads(got["data"])["body"]))
            items = body if isinstance(body, list) else [body]  # worker events come in batches
            for item in items:
                seen[item.get("type", "?")] = seen.get(item.get("type", "?"), 0) + 1
    pubsub.close()
    missing = wanted - set(seen)
    if missing:
        raise SystemExit(f"FAIL: task events missing: {sorted(missing)} (seen {seen})")
    print(f"OK  real worker delivered the fast-path task; task events seen: "
          f"{ {k: v for k, v in sorted(seen.items()) if k.startswith('task-')} }")


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0"
    prefix = f"rnverify-{uuid.uuid4().hex[:8]}:"
    factory = WorkerFactory(redis_url=url, key_prefix=prefix,
                            tmp_path=Path(tempfile.mkdtemp(prefix="rnverify-")))
    try:
        compare_with_celery(factory)
        with Receiver() as receiver:
            run_on_real_worker(factory, receiver)
    finally:
        factory.stop_all()
        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        shutil.rmtree(factory.tmp_path, ignore_errors=True)


if __name__ == "__main__":
    main()
