"""What recnotify changes in Celery and kombu, and why: each change is small and named.

- :func:`keep_worker_alive_on_broker_loss`: a Redis restart must not end the worker.
- :func:`reuse_kombu_clients`: kombu's Redis channel builds a new ``redis.Redis``
  object (about 80 us of CPU: response-callback tables copied) for every event publish
  and every message pushed back; one per channel does.
- :func:`restore_to_the_front`: with ack emulation off (workers/taskqueue/app.py), kombu
  pushes the messages a closing channel held (a warm shutdown) back to the end of the
  queue that is read last; they go back to the end read next, where kombu's own ack
  emulation restored them, so they do not wait through a backlog twice.
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
    pushing unacknowledged messages back then asks the collected connection for its
    address and fails with AttributeError, which nothing expects. Turned into the
    connection error it is, Celery logs it and carries on; the messages it could not
    push back are enqueued again by the watchdog (workers/state/schedule.py; a finished
    task may then run again: a duplicate the delivery state skips).
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


def restore_to_the_front() -> None:
    """Messages a worker held go back to the end of the queue read next (``RPUSH``).

    kombu's virtual ``_restore`` re-publishes them with ``_put`` (``LPUSH``: the end read
    last). They had already waited their turn, and their enqueued-at headers (older
    than the queue's oldest message) would sit where the watchdog reads the queue's
    progress (workers/state/schedule.py). The order is kept: kombu restores the most
    recently delivered first, so the earliest one ends up read first.
    """
    from kombu.transport import redis as kombu_redis

    channel: Any = kombu_redis.Channel
    original = channel._restore
    if getattr(original, "recnotify_patched", False):
        return

    def _restore(self: Any, message: Any, leftmost: bool = False) -> Any:
        if self.ack_emulation:
            return original(self, message, leftmost)
        info = message.delivery_info
        with self.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=False)
            # leftmost=False: RPUSH; it also marks the message redelivered
            self._do_restore_message(message.serializable(), info["exchange"],
                                     info["routing_key"], pipe, leftmost=False)
            pipe.execute()
        return None

    _restore.recnotify_patched = True  # type: ignore[attr-defined]
    channel._restore = _restore


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
    restore_to_the_front()
