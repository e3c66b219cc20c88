"""Publishing events to the Redis stream (SPEC 3).

``Publisher.publish`` validates the event (nothing invalid is ever written), then
writes it with one ``XADD`` (``durable_replicas=N``: then ``WAIT`` for N replicas).
With cells (``cells=`` or ``RECNOTIFY_CELLS``) it writes to the one cell that owns the
event (:mod:`producer.cells`); a cell that is down refuses its own events only.
It rides out a brief Redis outage: connection errors
are retried with a short backoff for up to ``publish_timeout_s`` before
:class:`PublishError` (a ``ConnectionError``) says the event was *not* accepted.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import redis
import redis.exceptions

from producer.cells import CellRouter, configured_router
from producer.constants import (
    DEFAULT_DURABLE_TIMEOUT_MS,
    DEFAULT_KEY_PREFIX,
    DEFAULT_PUBLISH_TIMEOUT_S,
    DEFAULT_REDIS_URL,
    ENV_KEY_PREFIX,
    ENV_REDIS_URL,
    events_key,
)
from producer.discovery import explicit_data_dir, find_running
from producer.durable import (
    check_durable_options,
    durability_problem,
    refused_for_replicas,
    xadd_and_wait,
)
from producer.errors import DurabilityError, PublishError
from producer.events import Event, ParamValue, validate_event
from producer.master_watch import MasterWatch
from producer.redis_url import client_from_url
from producer.tracing import publish_span

_RETRYABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
)


class Publisher:
    """Publishes recording events; safe to share between threads.

    With no ``redis_url``: ``RECNOTIFY_REDIS_URL``, else the Redis of the running
    ``recnotify run`` (the run file in ``RECNOTIFY_DATA_DIR`` when set; else the one in
    ``./.recnotify``, else the per-user pointer; see :mod:`producer.discovery`), else
    ``redis://127.0.0.1:6379/0``. The key prefix likewise.

    >>> publisher = Publisher("redis://127.0.0.1:6379/0")
    >>> event_id = publisher.publish("RECORDING_STARTED_EVENT", route="support",
    ...                              params={"UCID": "13-23132@1.2.3.4"})
    """

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        key_prefix: str | None = None,
        publish_timeout_s: float = DEFAULT_PUBLISH_TIMEOUT_S,
        client: redis.Redis | None = None,
        durable_replicas: int = 0,
        durable_timeout_ms: int = DEFAULT_DURABLE_TIMEOUT_MS,
        cells: str | Sequence[str] | CellRouter | None = None,
        cell_table: str | Mapping[str, int | str] | None = None,
    ) -> None:
        """``durable_replicas=N`` (opt-in): return only once N replicas have the event
        (``WAIT``), else :class:`DurabilityError`; see :mod:`producer.durable`.

        ``cells`` (URLs, or ``RECNOTIFY_CELLS`` when no ``redis_url`` is given) and
        ``cell_table`` (``{"bigcorp": 1}`` or ``"bigcorp=1"``; ``RECNOTIFY_CELL_TABLE``):
        publish each event to the cell that owns it (:mod:`producer.cells`); then
        ``redis_url`` and ``stream`` describe cell 0."""
        check_durable_options(durable_replicas, durable_timeout_ms, publish_timeout_s)
        self.cells = configured_router(cells, cell_table, explicit_url=redis_url,
                                       env=os.environ)
        if self.cells is not None:
            redis_url = self.cells.urls[0]
        self.durable_replicas = durable_replicas
        self.durable_timeout_ms = durable_timeout_ms
        # Not configured: the service `recnotify run` started (its run file), else the default.
        running = None
        if not (redis_url or os.environ.get(ENV_REDIS_URL)):
            running = find_running(explicit_data_dir())
        self.redis_url = (redis_url or os.environ.get(ENV_REDIS_URL)
                          or (running.redis_url if running else DEFAULT_REDIS_URL))
        if key_prefix is not None:
            self.key_prefix = key_prefix
        elif ENV_KEY_PREFIX in os.environ:
            self.key_prefix = os.environ[ENV_KEY_PREFIX]
        else:
            self.key_prefix = running.key_prefix if running else DEFAULT_KEY_PREFIX
        self.stream = events_key(self.key_prefix)
        self.publish_timeout_s = publish_timeout_s
        self._redis = client or client_from_url(
            self.redis_url,
            socket_timeout=publish_timeout_s,
            socket_connect_timeout=2.0,
            health_check_interval=30,
        )
        # sentinel:// only: follow a forced failover within a second (producer.master_watch)
        self._watch = MasterWatch(self._redis)
        self._cell_publishers = tuple(
            Publisher(url, key_prefix=self.key_prefix, publish_timeout_s=publish_timeout_s,
                      durable_replicas=durable_replicas, durable_timeout_ms=durable_timeout_ms)
            for url in (self.cells.urls[1:] if self.cells else ()))

    def publish(
        self,
        type: str,
        *,
        route: str | None = None,
        account: str | None = None,
        realm: str | None = None,
        result: str = "success",
        error: str | None = None,
        params: Mapping[str, ParamValue] | None = None,
        occurred_at: str | datetime | None = None,
        traceparent: str | None = None,
    ) -> str:
        """Validate and publish one event; return its id once Redis has it.

        ``traceparent``: the recorder's W3C trace context; with OpenTelemetry configured
        the span ``recnotify publish`` is its child (producer/tracing.py).
        """
        data: dict[str, Any] = {
            "type": type,
            "route": route,
            "account": account,
            "realm": realm,
            "result": result,
            "error": error,
            "params": dict(params or {}),
        }
        if occurred_at is not None:
            data["occurred_at"] = occurred_at
        if traceparent is not None:
            data["traceparent"] = traceparent
        event = validate_event(data)
        with publish_span(event, self.stream) as traced:
            self.publish_event(traced)
        return event.id

    def publish_event(self, event: Event) -> str:
        """Write an already validated event; returns the stream entry id."""
        if self.cells is not None:
            cell = self.cells.cell_of_event(event)  # cell 0 is this publisher's own Redis
            other = self._cell_publishers[cell.index - 1] if cell.index else None
            try:
                return other.publish_event(event) if other else self._publish_here(event)
            except PublishError as exc:
                refused = PublishError(f"{cell}: {exc}")
                refused.cell = cell.name
                raise refused from exc
        return self._publish_here(event)

    def _publish_here(self, event: Event) -> str:
        payload = event.to_json()
        deadline = time.monotonic() + self.publish_timeout_s
        delay_s = 0.05
        while True:
            try:
                if self.durable_replicas:
                    return self._publish_durably(event, payload)
                entry_id = self._redis.xadd(self.stream, {"event": payload})
                return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            except (*_RETRYABLE, redis.exceptions.ResponseError) as exc:
                # NOREPLICAS (min-replicas-to-write) was refused too: retry like READONLY
                if not isinstance(exc, _RETRYABLE) and not refused_for_replicas(exc):
                    raise
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PublishError(
                        f"event {event.id} was NOT published: Redis at "
                        f"{_redact(self.redis_url)} did not accept it within "
                        f"{self.publish_timeout_s:g} s ({exc})"
                    ) from exc
                time.sleep(min(delay_s, remaining))
                delay_s = min(delay_s * 2, 0.5)

    def _publish_durably(self, event: Event, payload: str) -> str:
        entry_id, acknowledged = xadd_and_wait(self._redis, self.stream, payload,
                                               self.durable_replicas, self.durable_timeout_ms)
        problem = durability_problem(event.id, entry_id, self.durable_replicas, acknowledged,
                                     self.durable_timeout_ms)
        if problem:
            raise DurabilityError(problem, event_id=event.id, entry_id=entry_id,
                                  wanted=self.durable_replicas, acknowledged=acknowledged)
        return entry_id

    def close(self) -> None:
        for other in self._cell_publishers:
            other.close()
        self._watch.stop()
        self._redis.close()


def _redact(url: str) -> str:
    """A Redis URL without its password, for messages."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


_default: Publisher | None = None
_default_lock = threading.Lock()


def default_publisher() -> Publisher:
    global _default
    with _default_lock:
        if _default is None:
            _default = Publisher()
        return _default


def publish(
    type: str,
    **kwargs: Any,
) -> str:
    """``Publisher().publish(...)`` with a process-wide default publisher."""
    return default_publisher().publish(type, **kwargs)
