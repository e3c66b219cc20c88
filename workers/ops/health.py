"""``recnotify check``: is the service (or this host's worker) alive? Returns the problems."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import redis

from producer.redis_url import client_from_url
from workers.config.settings import Settings

STALE_AFTER_S = 30.0


def _redis(settings: Settings) -> redis.Redis:
    return client_from_url(settings.redis_url, socket_timeout=3, socket_connect_timeout=3)


def _heartbeats(client: redis.Redis, settings: Settings) -> list[dict[str, Any]]:
    beats = []
    for key in client.scan_iter(match=settings.keys.heartbeats + "*", count=500):
        raw = client.get(key)
        if raw:
            beats.append(json.loads(raw))
    return beats


def check_all(settings: Settings) -> list[str]:
    """Redis, the database and at least one live worker."""
    problems: list[str] = []
    client = _redis(settings)
    try:
        client.ping()
        beats = _heartbeats(client, settings)
        now = time.time()
        live = [b for b in beats if now - float(b["at"]) < STALE_AFTER_S]
        if not live:
            problems.append(
                "no recnotify worker is running (no heartbeat in the last "
                f"{STALE_AFTER_S:.0f} s); start one with `recnotify worker`"
            )
    except redis.exceptions.RedisError as exc:
        problems.append(f"Redis at {settings.redis_url.rpartition('@')[2]} does not answer: {exc}")
    finally:
        client.close()
    try:
        from workers.store.database import Store

        Store.of(settings).ping()
    except Exception as exc:
        problems.append(f"database does not answer: {type(exc).__name__}: {exc}")
    return problems


def check_self(settings: Settings) -> list[str]:
    """A worker on this host is alive, connected to Redis and consuming (not the database)."""
    client = _redis(settings)
    host = socket.gethostname()
    try:
        beats = [
            b
            for b in _heartbeats(client, settings)
            if str(b.get("node", "")).startswith(host + "-")
        ]
    except redis.exceptions.RedisError as exc:
        return [f"Redis does not answer: {exc}"]
    finally:
        client.close()
    if not beats:
        return [f"no recnotify worker heartbeat from host {host!r}"]
    now = time.time()
    fresh = [
        b
        for b in beats
        if now - float(b["at"]) < STALE_AFTER_S
        and now - float(b["consumer_loop_at"]) < STALE_AFTER_S
    ]
    if not fresh:
        return [f"the worker on {host!r} has stopped consuming the event stream"]
    return []
