"""The naive baseline: a plain Celery task that POSTs each message with ``requests``.

The way most people would write it: default prefork pool, default settings, a new
``requests.post`` per message. Same Redis as recnotify (its own key prefix).

    NAIVE_BROKER_URL=redis://127.0.0.1:6379/0 NAIVE_KEY_PREFIX=naive: \
        celery -A bench.naive worker --loglevel WARNING
"""

from __future__ import annotations

import os
from typing import Any

import requests
from celery import Celery

app = Celery("naive", broker=os.environ.get("NAIVE_BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.broker_transport_options = {"global_keyprefix": os.environ.get("NAIVE_KEY_PREFIX", "")}


@app.task(name="naive.post")  # type: ignore[untyped-decorator]
def post(url: str, payload: dict[str, Any]) -> int:
    response = requests.post(url, json=payload, timeout=10)
    response.raise_for_status()
    return response.status_code
