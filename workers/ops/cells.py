"""Operating cells (``RECNOTIFY_CELLS``): which cell owns an event, and per-cell replay.

The database (destinations, attempt records, dead letters) is shared by every cell;
the Redis state (the event copy, notification states, queues) is the owning cell's.

- :func:`owning_cell`: the cell whose Redis holds the event (each cell is asked), else
  the cell its retained event (or its dead letter's) routes to
  (:class:`producer.cells.CellRouter`, the function the producer used), else None.
- :func:`replay_in_cells` / :func:`purge_in_cells`: every dead letter goes back to (or
  is released in) the cell its stored event routes to, through that cell's Redis and
  Celery queue; a cell that does not answer keeps its dead letters and is reported.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from producer.cells import Cell, CellRouter
from producer.redis_url import client_from_url
from workers.config.settings import Settings
from workers.ops.replay import purge_dead_letters, replay_dead_letters
from workers.ops.tracing import DRAIN_S
from workers.state.notification import EnqueueMany
from workers.state.records import Flusher

#: How long a cell that does not answer may hold up a trace or a replay.
CELL_TIMEOUT_S = 3.0


def _client(url: str) -> redis.Redis:
    return client_from_url(url, socket_timeout=CELL_TIMEOUT_S,
                           socket_connect_timeout=CELL_TIMEOUT_S)


def _router(settings: Settings) -> CellRouter:
    router = settings.cell_router
    if router is None:
        raise ValueError("no cells configured (RECNOTIFY_CELLS)")
    return router


def cell_of_letter(router: CellRouter, letter: dict[str, Any]) -> Cell | None:
    """The cell a dead letter's stored event routes to (None: no event JSON kept)."""
    raw = letter.get("event_json")
    if not raw:
        return None
    try:
        return router.cell_of_event(json.loads(raw))
    except (ValueError, TypeError, AttributeError):
        return None


def owning_cell(settings: Settings, event_id: str, store: Any) -> Cell | None:
    """The cell that owns ``event_id``: the one whose Redis has it, else by its dead letter."""
    router = _router(settings)
    key = settings.keys.event(event_id)
    for cell in router.cells:
        client = _client(cell.url)
        try:
            if client.exists(key):
                return cell
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            continue  # down: its events cannot be read now; the database may still say
        finally:
            client.close()
    # Redis forgot it (its dedupe window passed): the cell its retained event routes to
    stored = store.get_event_json(event_id)
    if stored:
        return cell_of_letter(router, {"event_json": stored})
    for letter in store.list_dead_letters(event_id=event_id):
        return cell_of_letter(router, letter)
    return None


def event_ids_for_ucid_in_cells(settings: Settings, ucid: str, store: Any) -> list[str]:
    """Every cell's events of one call (a call's events normally share one cell), and
    those the shared database retains."""
    for cell in _router(settings).cells:  # each cell's buffered records first
        client = _client(cell.url)
        try:
            Flusher.of(client, settings.keys, store, window_s=settings.dedupe_window_s
                       ).drain(timeout_s=DRAIN_S)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
            continue  # down: what it buffered is found once it is back
        finally:
            client.close()
    return list(store.event_ids_for_ucid(ucid))


@dataclass
class CellsOutcome:
    """Per cell name: how many were replayed (or purged); the cells that did not answer."""

    done: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    #: dead letters without a stored event: no cell can be chosen (left as they are)
    unrouted: int = 0

    @property
    def total(self) -> int:
        return sum(self.done.values())


def _groups(router: CellRouter, letters: list[dict[str, Any]]
            ) -> tuple[dict[int, list[int]], int]:
    groups: dict[int, list[int]] = {}
    unrouted = 0
    for letter in letters:
        cell = cell_of_letter(router, letter)
        if cell is None:
            unrouted += 1
            continue
        groups.setdefault(cell.index, []).append(int(letter["id"]))
    return groups, unrouted


def replay_in_cells(settings: Settings, store: Any,
                    enqueue_for: Callable[[Settings], EnqueueMany], *,
                    destination: str | None = None,
                    progress: Callable[[int], None] | None = None) -> CellsOutcome:
    """Replay each dead letter in the cell that owns its event (same notification id)."""
    router = _router(settings)
    letters = [d for d in store.list_dead_letters(destination=destination)
               if d.get("destination")]
    groups, unrouted = _groups(router, letters)
    outcome = CellsOutcome(unrouted=unrouted)
    _each_cell(settings, router, groups, outcome, lambda cell_settings, client, ids:
               replay_dead_letters(cell_settings, store, client, enqueue_for(cell_settings),
                                   destination=destination, ids=ids, progress=progress))
    return outcome


def purge_in_cells(settings: Settings, store: Any,
                   enqueue_for: Callable[[Settings], EnqueueMany], *,
                   destination: str | None = None) -> CellsOutcome:
    """Purge dead letters, releasing held ordered recordings in the owning cell."""
    router = _router(settings)
    letters = store.list_dead_letters(destination=destination)
    groups, unrouted = _groups(router, letters)
    if unrouted:  # no stored event, so no ordering state to release: purge them in cell 0
        routed = {i for ids in groups.values() for i in ids}
        groups.setdefault(0, []).extend(int(d["id"]) for d in letters if d["id"] not in routed)
    outcome = CellsOutcome()
    _each_cell(settings, router, groups, outcome, lambda cell_settings, client, ids:
               purge_dead_letters(cell_settings, store, client, enqueue_for(cell_settings),
                                  destination=destination, ids=ids))
    return outcome


def _each_cell(settings: Settings, router: Any, groups: dict[int, list[int]],
               outcome: CellsOutcome,
               work: Callable[[Settings, redis.Redis, list[int]], int]) -> None:
    """Run ``work`` on each cell's dead letters through that cell's Redis; a cell that
    does not answer keeps its dead letters and is reported."""
    for index, ids in sorted(groups.items()):
        cell = router.cells[index]
        client = _client(cell.url)
        try:
            client.ping()
            outcome.done[cell.name] = work(settings.for_cell(index), client, ids)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            outcome.failed[cell.name] = f"{cell} does not answer ({exc}): {len(ids)} dead " \
                                        "letter(s) kept"
        finally:
            client.close()
