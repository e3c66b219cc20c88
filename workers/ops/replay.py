"""Replaying dead letters: the same notification id, a fresh attempt count."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis

from workers.config.settings import Settings
from workers.state.codec import as_text
from workers.state.notification import EnqueueMany
from workers.state.writes import queue_fresh_attempts


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
    replayable = [d for d in letters if d.get("destination") and d.get("event_json")]
    done = 0
    for start in range(0, len(replayable), 500):
        batch = replayable[start : start + 500]
        pipe = client.pipeline(transaction=False)
        for letter in batch:
            pipe.set(
                keys.event(letter["event_id"]),
                letter["event_json"],
                ex=max(1, int(settings.dedupe_window_s)),  # else read from the database
            )
            queue_fresh_attempts(pipe, keys, letter["notification_id"])
        pipe.execute()
        enqueue([(d["event_id"], d["destination"]) for d in batch])
        store.take_dead_letters(ids=[d["id"] for d in batch])
        done += len(batch)
        if progress:
            progress(len(batch))
    return done


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
