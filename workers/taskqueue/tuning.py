"""What recnotify changes in Celery and kombu, and why: each change is small and named.

- :func:`keep_worker_alive_on_broker_loss`: a Redis restart must not end the worker.
- :func:`reuse_kombu_clients`: kombu's Redis channel builds a new ``redis.Redis``
  object (about 80 us of CPU: response-callback tables copied) for every ack,
  visibility-bookkeeping pipeline and event publish; one per channel does.
- :func:`plain_qos_pipelines`: kombu wraps each task's visibility bookkeeping (ZADD to
  ``unacked_index`` + HSET ``unacked`` when a task is taken; ZREM + HDEL when it is acked)
  in MULTI/EXEC: four commands per task that buy nothing (see its docstring).
- :func:`early_acks`: a delivered notification's task message is acknowledged by the
  delivery's own last script (workers/state/lua/attempt_conclude.lua); the worker's ack
  then only forgets the message in memory: one round trip per task saved.
- :class:`BatchedEventsConsumer`: Celery flushes buffered task events (``task-received``,
  ``task-started``, ``task-succeeded``) on every event-loop turn, about one publish per
  task; flushing at most every ``EVENT_FLUSH_S`` groups them (Flower sees them a few
  milliseconds later, and Celery still flushes a buffer at once when it holds 24).
"""

from __future__ import annotations

from typing import Any

from celery.worker.consumer import Consumer

#: The longest a task event waits in the worker's buffer before it is published.
EVENT_FLUSH_S = 0.05


def keep_worker_alive_on_broker_loss() -> None:
    """Work around Celery/kombu 5.7 exiting ("Unrecoverable error: AttributeError:
    'NoneType' object has no attribute 'client'/'hostname'") after a Redis restart.

    On connection loss the worker collects the broken connection, then closes it;
    pushing unacknowledged messages back, or acknowledging a task that finished
    meanwhile, then asks the collected connection for its address and fails with
    AttributeError, which nothing expects. Turned into the connection error it is,
    Celery logs it and carries on; the messages stay in the transport's unacked set
    in Redis and come back after the visibility timeout (a finished task may then
    run again: a duplicate the delivery state skips).
    """
    import redis.exceptions
    from kombu.transport import redis as kombu_redis

    channel: Any = kombu_redis.Channel
    original = channel._connparams
    if getattr(original, "recnotify_patched", False):
        return

    def _connparams(self: Any, asynchronous: bool = False) -> Any:
        if self.connection is None or self.connection.client is None:
            raise redis.exceptions.ConnectionError("broker connection already closed")
        return original(self, asynchronous=asynchronous)

    _connparams.recnotify_patched = True  # type: ignore[attr-defined]
    channel._connparams = _connparams


def reuse_kombu_clients() -> None:
    """One synchronous ``redis.Redis`` per kombu channel and connection pool.

    A ``redis.Redis`` holds no connection of its own (each command or pipeline borrows
    one from the pool), so sharing it between threads is what redis-py documents as
    safe. The cache is keyed by the pool: after a reconnect the channel has a new pool,
    and a new client follows it. Asynchronous clients (BRPOP) are left alone.
    """
    from kombu.transport import redis as kombu_redis

    channel: Any = kombu_redis.Channel
    original = channel._create_client
    if getattr(original, "recnotify_patched", False):
        return

    def _create_client(self: Any, asynchronous: bool = False) -> Any:
        if asynchronous:
            return original(self, asynchronous=True)
        pool = self.pool
        cached = self.__dict__.get("_recnotify_client")
        if cached is None or cached.connection_pool is not pool:
            cached = original(self)
            self.__dict__["_recnotify_client"] = cached
        return cached

    _create_client.recnotify_patched = True  # type: ignore[attr-defined]
    channel._create_client = _create_client


def plain_qos_pipelines() -> None:
    """kombu's QoS bookkeeping pipelines without MULTI/EXEC (the same round trip).

    Why the transaction buys nothing: the restorer (``restore_visible``) only takes index
    entries older than the visibility timeout, so it never sees a task between its ZADD
    and HSET (both sent in one write, ZADD first), nor between an ack's ZREM and HDEL (the
    index entry goes first, so no restorer can pick the task up again). A connection lost
    mid-pipeline leaves at worst an index entry without its payload, which the restorer
    drops, exactly as an EXEC that never ran leaves nothing: the task was already taken
    off the queue in both cases. The restorer's own pipeline (``restore_by_tag``) passes
    its pipeline in and keeps its transaction.
    """
    from contextlib import contextmanager

    from kombu.transport import redis as kombu_redis

    qos: Any = kombu_redis.QoS
    if getattr(qos.pipe_or_acquire, "recnotify_patched", False):
        return

    @contextmanager
    def pipe_or_acquire(self: Any, pipe: Any = None, client: Any = None) -> Any:
        if pipe:
            yield pipe
        else:
            with self.channel.conn_or_acquire(client) as client:
                yield client.pipeline(transaction=False)

    pipe_or_acquire.recnotify_patched = True  # type: ignore[attr-defined]
    qos.pipe_or_acquire = pipe_or_acquire


#: Delivery tags whose Redis bookkeeping the delivery already removed (this process).
_ACKED_EARLY: set[str] = set()


def acked_early(tag: str) -> None:
    """The delivery removed ``tag`` from ``unacked``/``unacked_index`` (attempt_conclude):
    the worker's coming ack of it need not send anything."""
    _ACKED_EARLY.add(tag)


def early_acks() -> None:
    """kombu's ack skips the ZREM + HDEL of a message the delivery acknowledged itself.

    Safe because the delivery acknowledges only in the script that makes the notification
    delivered (terminal: any copy is skipped), unordered destinations only; if the worker
    dies before its own ack, the message is simply gone from Redis already, as after an
    ack. Every other outcome (retry, dead letter, duplicate, a failure) acks as before.
    """
    from kombu.transport import redis as kombu_redis
    from kombu.transport import virtual

    qos: Any = kombu_redis.QoS
    original = qos.ack
    if getattr(original, "recnotify_patched", False):
        return

    def ack(self: Any, delivery_tag: Any) -> None:
        if delivery_tag in _ACKED_EARLY:
            _ACKED_EARLY.discard(delivery_tag)
            virtual.QoS.ack(self, delivery_tag)  # type: ignore[no-untyped-call]  # memory only
            return
        original(self, delivery_tag)

    ack.recnotify_patched = True  # type: ignore[attr-defined]
    qos.ack = ack


class BatchedEventsConsumer(Consumer):  # type: ignore[misc]
    """Celery's consumer, flushing buffered task events at most every ``EVENT_FLUSH_S``."""

    _flush_scheduled = False

    def on_send_event_buffered(self) -> None:
        if self.hub is None or self._flush_scheduled:
            return
        self._flush_scheduled = True
        # Called from pool threads too: only the hub's own thread touches its timer heap.
        self.hub.call_soon(self._arm_flush)

    def _arm_flush(self) -> None:
        self.hub.call_later(EVENT_FLUSH_S, self._flush_batched)

    def _flush_batched(self) -> None:
        self._flush_scheduled = False
        self._flush_events()


def apply() -> None:
    """Install the kombu patches (idempotent); the consumer is chosen by configuration."""
    keep_worker_alive_on_broker_loss()
    reuse_kombu_clients()
    plain_qos_pipelines()
    early_acks()
