"""The naive baseline: a plain Celery task that POSTs each message with ``requests``.

Written as a Celery user would write it: the default prefork pool at its default
concurrency (one process per CPU), default settings, and one ``requests.Session``
per worker process (connections kept alive), so the baseline is not weakened by a
new connection per message. Same Redis as recnotify (its own key prefix).

``naive.noop`` is the Celery ceiling on the same machine: a task that only counts
itself (one ``INCR`` on a per-process Redis connection, so the benchmark can see
it finish).

    NAIVE_BROKER_URL=redis://127.0.0.1:6379/0 NAIVE_KEY_PREFIX=naive: \
        celery -A bench.naive worker --loglevel WARNING
"""

from __future__ import annotations

import os
from typing import Any

import redis
import requests
from celery import Celery

app = Celery("naive", broker=os.environ.get("NAIVE_BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.broker_transport_options = {"global_keyprefix": os.environ.get("NAIVE_KEY_PREFIX", "")}

_per_process: dict[int, tuple[requests.Session, redis.Redis]] = {}


def _local() -> tuple[requests.Session, redis.Redis]:
    """This worker process's Session and Redis client (made after the fork)."""
    pid = os.getpid()
    if pid not in _per_process:
        _per_process[pid] = (requests.Session(), redis.Redis.from_url(app.conf.broker_url))
    return _per_process[pid]


@app.task(name="naive.post")  # type: ignore[untyped-decorator]
def post(url: str, payload: dict[str, Any]) -> int:
    response = _local()[0].post(url, json=payload, timeout=10)
    response.raise_for_status()
    return response.status_code


@app.task(name="naive.noop")  # type: ignore[untyped-decorator]
def noop(counter: str) -> None:
    _local()[1].incr(counter)
