"""Enqueue many ``recnotify.deliver`` tasks in one Redis round trip.

``task.apply_async`` costs one round trip and about 0.25 ms of Celery/kombu work
per task; an event matching 1,000 destinations took close to a second to fan
out. :class:`TaskBatch` writes the very messages Celery's Redis transport
writes (task protocol 2, JSON body, base64 body encoding, the same headers and
properties) and ``LPUSH``es them all, with their ``task-sent`` events
(Flower's "sent" state), in one pipeline. The events go ``EVENTS_CHUNK`` to a ``PUBLISH``:
a list body with routing key ``task.multi``, the form Celery's own worker uses for its
buffered task events and that its event receiver (Flower's) reads.

The wire format, as kombu's Redis transport stores it in the queue list
``{global_keyprefix}{queue}`` (priority 0, so no priority suffix)::

    {"body": base64(json([args, kwargs, embed])), "content-encoding": "utf-8",
     "content-type": "application/json", "headers": {...protocol 2...},
     "properties": {"correlation_id", "reply_to", "delivery_mode": 2,
                    "delivery_info": {"exchange": "", "routing_key": queue},
                    "priority": 0, "body_encoding": "base64", "delivery_tag"}}

Events go, like every Celery event on Redis, to the pub/sub channel
``{global_keyprefix}/{db}.celeryev/task.multi``.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import Celery
from celery.utils.nodenames import anon_nodename
from celery.utils.time import utcoffset

from workers.state.notification import EnqueueMany
from workers.state.schedule import ENQUEUED_AT_HEADER, schedule_member

#: Messages per LPUSH (all in the same pipeline): bounds one command's size (~1 KiB each).
LPUSH_CHUNK = 1000
#: At most this many task-sent events per PUBLISH (about 600 bytes each, so a large
#: fan-out stays far below Redis's pub/sub client output limits).
EVENTS_CHUNK = 200
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def _envelope(body: str, headers: dict[str, Any], properties: dict[str, Any]) -> str:
    """One message as kombu's virtual transport serializes it (body already JSON)."""
    return json.dumps({
        "body": base64.b64encode(body.encode()).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": properties,
    })


@dataclass
class TaskBatch:
    """Builds Celery protocol-2 messages for one task and pushes them in one pipeline."""

    client: redis.Redis
    task_name: str
    queue: str
    key_prefix: str = ""
    ignore_result: bool = True
    #: ``None``: no ``task-sent`` events (``task_send_sent_event`` off).
    event_channel: str | None = None
    clock: Callable[[], int] = field(default=lambda: 0)
    origin: str = field(default_factory=anon_nodename)
    #: ``(watchdog key, watchdog_s)``: every task pushed gets its watchdog entry, due
    #: ``watchdog_s`` later, on the same pipeline (workers/state/schedule.py).
    watchdog: tuple[str, float] | None = None
    _local: threading.local = field(default_factory=threading.local, repr=False)

    @property
    def queue_key(self) -> str:
        return f"{self.key_prefix}{self.queue}"

    def message(self, args: Sequence[str]) -> tuple[str, dict[str, Any] | None]:
        """The queued message for ``task(*args)`` and its ``task-sent`` event (or None)."""
        task_id = str(uuid.uuid4())
        argsrepr = repr(tuple(args))
        headers: dict[str, Any] = {
            "lang": "py", "task": self.task_name, "id": task_id, "shadow": None, "eta": None,
            "expires": None, "group": None, "group_index": None, "retries": 0,
            "timelimit": [None, None], "root_id": task_id, "parent_id": None,
            "argsrepr": argsrepr, "kwargsrepr": "{}", "origin": self.origin,
            "ignore_result": self.ignore_result, "replaced_task_nesting": 0,
            "stamped_headers": None, "stamps": {}, ENQUEUED_AT_HEADER: time.time(),
        }
        properties: dict[str, Any] = {
            "correlation_id": task_id, "reply_to": self._reply_to(), "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": self.queue}, "priority": 0,
            "body_encoding": "base64", "delivery_tag": str(uuid.uuid4()),
        }
        message = _envelope(json.dumps([list(args), {}, _EMBED]), headers, properties)
        if self.event_channel is None:
            return message, None
        event: dict[str, Any] = {
            "hostname": self.origin, "utcoffset": utcoffset(), "pid": os.getpid(),
            "clock": self.clock(), "uuid": task_id, "root_id": task_id, "parent_id": None,
            "name": self.task_name, "args": argsrepr, "kwargs": "{}", "retries": 0,
            "eta": None, "expires": None, "queue": self.queue, "exchange": "",
            "routing_key": self.queue, "timestamp": time.time(), "type": "task-sent",
        }
        return message, event

    def events_message(self, events: Sequence[dict[str, Any]]) -> str:
        """One pub/sub message carrying ``events`` (Celery's ``task.multi`` form)."""
        return _envelope(json.dumps(list(events)), {"hostname": self.origin}, {
            "delivery_mode": 1,
            "delivery_info": {"exchange": "celeryev", "routing_key": "task.multi"},
            "priority": 0, "body_encoding": "base64", "delivery_tag": str(uuid.uuid4()),
        })

    def __call__(self, calls: Sequence[Sequence[str]]) -> None:
        """A TaskBatch is an enqueue function (workers.stream.consumer.Enqueue): :meth:`push`."""
        self.push(calls)

    def push(self, calls: Sequence[Sequence[str]]) -> None:
        """Enqueue one task per argument tuple, in order, in one round trip."""
        if calls:
            pipe = self.client.pipeline(transaction=False)
            self.add_to(pipe, calls)
            pipe.execute()

    def add_to(self, pipe: redis.client.Pipeline, calls: Sequence[Sequence[str]]) -> None:
        """Queue the commands of :meth:`push` on ``pipe`` (the caller executes it), so a
        caller can enqueue in the same round trip as its own writes."""
        messages: list[str] = []
        events: list[dict[str, Any]] = []
        for args in calls:
            message, event = self.message(args)
            messages.append(message)
            if event is not None:
                events.append(event)
        # LPUSH a b c leaves "a" at the tail, where the worker's BRPOP takes first: FIFO.
        for start in range(0, len(messages), LPUSH_CHUNK):
            pipe.lpush(self.queue_key, *messages[start:start + LPUSH_CHUNK])
        if self.event_channel is not None:
            for start in range(0, len(events), EVENTS_CHUNK):
                pipe.publish(self.event_channel,
                             self.events_message(events[start:start + EVENTS_CHUNK]))
        if self.watchdog is not None and calls:
            key, watchdog_s = self.watchdog
            due = time.time() + watchdog_s
            pipe.zadd(key, {schedule_member(str(args[0]), str(args[1])): due for args in calls})

    def _reply_to(self) -> str:
        oid: str | None = getattr(self._local, "oid", None)
        if oid is None:
            oid = self._local.oid = str(uuid.uuid4())
        return oid


def task_batch(app: Celery, client: redis.Redis, task_name: str,
               watchdog: tuple[str, float] | None = None) -> TaskBatch:
    """A :class:`TaskBatch` for ``task_name`` as ``app`` routes and configures it."""
    conf = app.conf
    options = conf.broker_transport_options or {}
    prefix = str(options.get("global_keyprefix", ""))
    route = (conf.task_routes or {}).get(task_name, {})
    queue = str(route.get("queue", conf.task_default_queue))
    db = int(client.connection_pool.connection_kwargs.get("db", 0))
    channel = f"{prefix}/{db}.{conf.event_exchange}/task.multi" if conf.task_send_sent_event \
        else None
    return TaskBatch(client=client, task_name=task_name, queue=queue, key_prefix=prefix,
                     ignore_result=bool(conf.task_ignore_result), event_channel=channel,
                     clock=app.clock.forward, watchdog=watchdog)


#: The name of recnotify's one Celery task (arguments: event id, destination name).
DELIVER_TASK = "recnotify.deliver"


def make_enqueue(app: Celery) -> EnqueueMany:
    """Enqueue delivery tasks, all of one call in one Redis round trip.

    A :class:`TaskBatch` is callable, and its ``add_to`` lets the stream consumer queue the
    tasks on its own batch pipeline (one round trip for the writes, the tasks and the ack).
    """
    from workers.taskqueue.runtime import get_runtime  # per process, built on first use

    settings = app.recnotify_settings
    return task_batch(app, get_runtime(settings).redis, DELIVER_TASK,
                      watchdog=(settings.keys.watchdog, settings.watchdog_s))
