"""Check the one-round-trip fan-out (workers.taskqueue.enqueue) against Celery itself.

1. The message and the ``task-sent`` event it writes have exactly the shape Celery's
   ``apply_async`` writes (same keys, same constant values; ids and times differ).
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
    assert _shape(theirs) == _shape(ours), (_shape(theirs), _shape(ours))
    assert events[0][0] == events[1][0], events
    assert _shape(events[0][1]) == _shape(events[1][1]), (events[0][1], events[1][1])
    print(f"OK  message and task-sent event identical in shape to Celery's "
          f"(queue {queue}, channel {events[0][0].decode()})")
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
