"""Per-cell dead-letter replay and purge (workers/ops/cells.py) with one cell that answers
(the test Redis) and one that does not: the answering cell's dead letters are replayed
through its own Redis and queue, the other's are kept and reported."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import redis

from producer.cells import CellRouter
from tests.helpers import TEST_SECRET_KEY
from workers.config.settings import Settings
from workers.ops.cells import owning_cell, purge_in_cells, replay_in_cells
from workers.store.database import Store


def setup(redis_url: str, key_prefix: str, tmp_path: Path
          ) -> tuple[Settings, Store, dict[int, str]]:
    from workers.ops.embedded import free_port

    cells = f"up={redis_url},down=redis://127.0.0.1:{free_port()}/0"
    settings = replace(Settings.from_env({}, discover=False, key_prefix=key_prefix,
                                         data_dir=tmp_path, secret_key=TEST_SECRET_KEY),
                       cells=cells)
    store = Store(settings.effective_database_url, TEST_SECRET_KEY)
    store.upgrade()
    router = CellRouter.parse(cells)
    account = {i: next(f"t{n}" for n in range(100) if router.index_for(account=f"t{n}") == i)
               for i in (0, 1)}
    store.add_dead_letters([{
        "notification_id": f"msg_{i}", "event_id": f"ev-{i}", "destination": "crm",
        "event": {"schema": 1, "type": "RECORDING_STARTED_EVENT", "id": f"ev-{i}",
                  "occurred_at": "2026-11-24T20:01:02.123Z", "result": "success",
                  "error": None, "route": None, "account": account[i], "realm": None,
                  "params": {}},
        "attempts": [{"attempt": 1, "status": 404}], "reason": "HTTP 404"} for i in (0, 1)])
    return settings, store, account


def test_replay_goes_through_the_owning_cell_and_keeps_a_down_cell_s_letters(
        redis_url: str, key_prefix: str, tmp_path: Path, redis_client: redis.Redis) -> None:
    settings, store, _ = setup(redis_url, key_prefix, tmp_path)
    enqueued: list[tuple[str, Sequence[tuple[str, str]]]] = []

    def enqueue_for(cell_settings: Settings) -> object:
        return lambda pairs: enqueued.append((cell_settings.redis_url, list(pairs)))

    outcome = replay_in_cells(settings, store, enqueue_for)  # type: ignore[arg-type]
    assert outcome.done == {"up": 1} and outcome.total == 1
    assert list(outcome.failed) == ["down"] and "1 dead letter(s) kept" in outcome.failed["down"]
    assert enqueued == [(redis_url, [("ev-0", "crm")])]
    assert json.loads(redis_client.get(f"{key_prefix}ev:ev-0") or "{}")["id"] == "ev-0"
    assert [d["event_id"] for d in store.list_dead_letters()] == ["ev-1"]
    # the kept one is still known to belong to the down cell
    cell = owning_cell(settings, "ev-1", store)
    assert cell is not None and cell.name == "down"


def test_purge_releases_in_the_owning_cell_only(redis_url: str, key_prefix: str,
                                                tmp_path: Path) -> None:
    settings, store, _ = setup(redis_url, key_prefix, tmp_path)
    outcome = purge_in_cells(settings, store, lambda s: (lambda pairs: None))
    assert outcome.done == {"up": 1} and list(outcome.failed) == ["down"]
    assert [d["event_id"] for d in store.list_dead_letters()] == ["ev-1"]
