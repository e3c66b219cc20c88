"""``recnotify trace``: an event, its notifications, their attempts and current state."""

from __future__ import annotations

import json
from typing import Any

import redis

from producer.events import load_stored_event
from producer.redis_url import client_from_url
from workers.config.settings import Settings
from workers.destinations.routing import RoutingIndex
from workers.http.request import notification_id
from workers.state.codec import as_text
from workers.state.records import Flusher
from workers.store.database import Store

#: How long a lookup waits for the records buffered in Redis to reach the database.
DRAIN_S = 5.0


def event_ids_for_ucid(settings: Settings, ucid: str, *, store: Store | None = None,
                       client: redis.Redis | None = None) -> list[str]:
    """The events of one call (its UCID), oldest first, from the database, once the events
    consumed a moment ago (still buffered in Redis) are written there."""
    store = store or Store.of(settings)
    Flusher.of(client or client_from_url(settings.redis_url), settings.keys, store,
               window_s=settings.dedupe_window_s).drain(timeout_s=DRAIN_S)
    return store.event_ids_for_ucid(ucid)


def trace_event(settings: Settings, event_id: str, *, client: redis.Redis | None = None,
                store: Store | None = None) -> dict[str, Any]:
    """Everything known about one event: its live state from Redis (work in flight, and
    finished work for the dedupe window), its history from the database.

    Long-running callers (the admin API) pass their own client and store.
    """
    client = client or client_from_url(settings.redis_url)
    store = store or Store.of(settings)
    keys = settings.keys
    raw: Any = client.get(keys.event(event_id))
    if raw is None:
        raw = store.get_event_json(event_id)
    event = json.loads(raw) if raw else None
    attempts = store.list_attempts(event_id=event_id, limit=10_000)
    dead = {d["notification_id"]: d for d in store.list_dead_letters(event_id=event_id)}
    matching = (
        {d.name for d in RoutingIndex.build(store.list_destinations()).match(
            load_stored_event(raw))
         if client.exists(keys.notification(notification_id(event_id, d.name)))}
        if raw else set()
    )
    destinations = sorted(
        matching | {a["destination"] for a in attempts} | {d["destination"] for d in dead.values()}
    )
    notifications = []
    for name in destinations:
        nid = notification_id(event_id, name)
        state = client.hgetall(keys.notification(nid))
        log = [json.loads(x) for x in client.lrange(keys.notification_log(nid), 0, -1)]
        rows = sorted((a for a in attempts if a["destination"] == name), key=lambda a: a["attempt"])
        history = log or [
            {k: a.get(k) for k in ("attempt", "at", "status", "error", "latency_ms")} for a in rows
        ]
        current = as_text(state.get(b"state")) or (rows[-1]["outcome"] if rows else "")
        if nid in dead:
            current = "dead"
        item: dict[str, Any] = {"destination": name, "notification_id": nid,
                                "state": current or "pending", "attempts": history}
        if current == "waiting":  # SPEC 6: an open circuit's notifications show as pending
            item["state"], item["waiting"] = "pending", as_text(state.get(b"waiting"))
        notifications.append(item)
    return {
        "event_id": event_id,
        "type": event["type"] if event else None,
        "event": event,
        "notifications": notifications,
    }
