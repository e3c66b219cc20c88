"""Upgrading keeps the history: ``recnotify db upgrade`` copies the events an earlier
version left in the stream into the database (real Redis, real SQLite, the real CLI)."""

from __future__ import annotations

import json
import uuid

from click.testing import CliRunner

from tests.helpers import WorkerFactory
from workers.cli.main import main
from workers.ops.tracing import event_ids_for_ucid


def test_db_upgrade_copies_the_stream_s_events_so_trace_and_replay_keep_them(
        workers: WorkerFactory) -> None:
    keys = workers.settings.keys
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for n, event_id in enumerate(ids):  # as an earlier version left them
        workers.redis.xadd(keys.events, {"event": json.dumps({
            "id": event_id, "type": "RECORDING_STARTED_EVENT",
            "params": {"UCID": "old-call" if n < 2 else "other"}})})
    workers.redis.xadd(keys.events, {"event": "not json"})  # a poison entry: skipped
    env = workers.env()
    first = CliRunner().invoke(main, ["db", "upgrade"], env=env, catch_exceptions=False)
    assert first.exit_code == 0, first.output
    assert first.output.splitlines() == ["database schema is up to date",
                                         "3 event(s) the stream retains are in the database"]
    assert workers.store.count_events() == 3
    assert event_ids_for_ucid(workers.settings, "old-call") == ids[:2]
    again = CliRunner().invoke(main, ["db", "upgrade"], env=env, catch_exceptions=False)
    assert again.exit_code == 0 and workers.store.count_events() == 3  # idempotent
    stored = json.loads(workers.store.get_event_json(ids[2]) or "{}")
    assert stored["params"] == {"UCID": "other"}


def test_db_upgrade_without_redis_upgrades_the_schema_and_says_what_it_did_not_copy(
        workers: WorkerFactory) -> None:
    env = {**workers.env(), "RECNOTIFY_REDIS_URL": "redis://127.0.0.1:1/0"}
    result = CliRunner().invoke(main, ["db", "upgrade"], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "database schema is up to date"
    assert lines[1].startswith("warning: Redis at redis://127.0.0.1:1/0 did not answer")
    assert "run `recnotify db upgrade` again with Redis up" in lines[1]
