"""Replaying dead letters: the same notification id, a fresh attempt count."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import redis

from workers.config.settings import Settings
from workers.state.codec import as_text
from workers.state.notification import EnqueueMany
from workers.state.writes import NOTIFICATION_TTL_S, queue_fresh_attempts


def replay_dead_letters(
    settings: Settings,
    store: Any,
    client: redis.Redis,
    enqueue: EnqueueMany,
    *,
    destination: str | None = None,
    ids: Sequence[int] | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Re-enqueue dead letters (all, one destination's, or by id); returns how many.

    The event is put back in Redis from the dead letter, the notification's state
    is reset, and the task enqueued; only then is the dead letter removed, so a
    crash in between can only replay twice (same webhook-id), never lose one.
    """
    keys = settings.keys
    letters = store.list_dead_letters(destination=destination)
    if ids is not None:
        wanted = set(ids)
        letters = [d for d in letters if d["id"] in wanted]
    window_s = max(1, int(settings.dedupe_window_s))
    replayable = []
    for letter in letters:
        if not letter.get("destination"):
            continue  # a refused stream entry: nothing to send
        kept = store.get_event_json(letter["event_id"])
        event_json = kept or _event_of(letter)
        if event_json is None:
            continue  # no copy of its event anywhere
        # the database's copy outlives the Redis one; without it, Redis keeps it long
        replayable.append((letter, event_json, window_s if kept else NOTIFICATION_TTL_S))
    done = 0
    for start in range(0, len(replayable), 500):
        batch = [letter for letter, _, _ in replayable[start : start + 500]]
        pipe = client.pipeline(transaction=False)
        for letter, event_json, ttl_s in replayable[start : start + 500]:
            pipe.set(keys.event(letter["event_id"]), event_json, ex=ttl_s)
            queue_fresh_attempts(pipe, keys, letter["notification_id"])
        pipe.execute()
        enqueue([(d["event_id"], d["destination"]) for d in batch])
        store.take_dead_letters(ids=[d["id"] for d in batch])
        done += len(batch)
        if progress:
            progress(len(batch))
    return done


def _event_of(letter: dict[str, Any]) -> str | None:
    """The dead letter's own copy of its event: JSON of an event object, else None."""
    raw = letter.get("event_json")
    try:
        event = json.loads(raw) if raw else None
    except ValueError:
        return None
    return raw if isinstance(event, dict) and event.get("id") else None


def purge_dead_letters(settings: Settings, store: Any, client: redis.Redis,
                       enqueue: EnqueueMany, *,
                       destination: str | None = None,
                       ids: Sequence[int] | None = None) -> int:
    """Delete dead letters (all, one destination's, or by id) for good; returns how many.

    A purged dead letter that holds back an ordered recording (``on_dead_letter:
    hold``) lets the recording's next notification go.
    """
    from workers.state.ordering import Ordering

    letters = store.take_dead_letters(destination=destination, ids=ids)
    keys = settings.keys
    ordering = Ordering(client, settings.key_prefix, keys.events, keys.group)
    for letter in letters:
        pair, member = client.hmget(keys.notification(letter["notification_id"]),
                                    ["ord_pair", "ord_member"])
        if pair and member:
            ordering.unhold(as_text(pair), as_text(member), enqueue)
    return len(letters)
