"""Retained events in the database (SQLite and PostgreSQL): what trace, dead-letter replay
and backfill read once Redis has forgotten an event."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import event as sa_event
from sqlalchemy import func, select

from workers.store.database import Store
from workers.store.events import MAX_UCID_CHARS, entry_numbers
from workers.store.records import purge_in_batches
from workers.store.schema import events

DAY_S = 86400.0


class Clock:
    def __init__(self, now: float = 2_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = (f"sqlite:///{tmp_path}/data/recnotify.db" if request.param == "sqlite"
           else str(request.getfixturevalue("postgres_url")))
    made = Store(url, clock=Clock())
    made.upgrade()
    yield made
    made.close()


def row(n: int, *, ms: int = 1_700_000_000_000, seq: int = 0, ucid: str | None = "call-1",
        content: str = "a", stored_at: float = 2_000_000.0) -> dict[str, Any]:
    event_id = f"00000000-0000-0000-0000-{n:012d}"
    return {"event_id": event_id, "entry_id": f"{ms}-{seq}", "type": "RECORDING_STARTED_EVENT",
            "ucid": ucid, "stored_at": stored_at,
            "event_json": json.dumps({"id": event_id, "content": content})}


def test_an_event_id_is_stored_once_and_keeps_its_first_content(store: Store) -> None:
    store.add_events([row(1, content="first")])
    store.add_events([row(1, content="second"), row(2)])  # a re-read batch, and a new one
    store.add_events([row(3, content="x"), row(3, content="y")])  # twice in one batch
    assert json.loads(store.get_event_json(row(1)["event_id"]) or "")["content"] == "first"
    assert json.loads(store.get_event_json(row(3)["event_id"]) or "")["content"] == "x"
    assert store.count_events() == 3
    assert store.get_event_json("00000000-0000-0000-0000-999999999999") is None


def test_events_come_back_in_stream_order_after_a_cursor_and_within_the_window(
        store: Store) -> None:
    # stored out of order (two consumers' batches), read in stream order
    store.add_events([row(3, ms=3000, seq=0), row(1, ms=1000, seq=5), row(2, ms=1000, seq=12)])
    store.add_events([row(4, ms=5000)])
    ids = [e for e, _, _ in store.events_after("", "+")]
    assert ids == ["1000-5", "1000-12", "3000-0", "5000-0"]
    assert [e for e, _, _ in store.events_after("1000-5", "+")] == [
        "1000-12", "3000-0", "5000-0"]
    window = store.events_after("", f"3000-{2**63 - 1}", first="1000-6")
    assert [e for e, _, _ in window] == ["1000-12", "3000-0"]
    assert [e for e, _, _ in store.events_after("", "+", limit=2)] == ["1000-5", "1000-12"]
    body = {e: raw for e, raw, _ in store.events_after("", "+")}["3000-0"]
    assert json.loads(body)["id"] == row(3)["event_id"]


def test_paging_with_the_cursor_reads_every_event_once_when_two_cells_share_entry_ids(
        store: Store) -> None:
    # two cells' streams: the same entry ids, one event each
    store.add_events([row(n, ms=1000 + n // 2, seq=0) for n in range(1, 9)])
    seen, cursor = [], ""
    while page := store.events_after(cursor, "+", limit=1):
        seen.append(json.loads(page[0][1])["id"])
        cursor = page[-1][2]
    assert sorted(seen) == sorted(row(n)["event_id"] for n in range(1, 9))
    assert len(seen) == 8
    # an older checkpoint's bare entry id resumes after every row of that entry
    after_bare = store.events_after("1002-0", "+")
    assert [e for e, _, _ in after_bare] == ["1003-0", "1003-0", "1004-0"]


def test_a_call_s_events_are_found_by_ucid_oldest_first(store: Store) -> None:
    long_ucid = "u" * (MAX_UCID_CHARS + 50)
    other_long = "u" * (MAX_UCID_CHARS + 50) + "v"  # the same first 200 characters
    long_rows = [row(5, ucid=long_ucid), row(6, ucid=other_long)]
    for r, u in zip(long_rows, (long_ucid, other_long), strict=True):
        r["event_json"] = json.dumps({"id": r["event_id"], "params": {"UCID": u}})
    store.add_events([row(2, ms=2000), row(1, ms=1000), row(3, ucid="call-2"),
                      row(4, ucid=None), *long_rows])
    assert store.event_ids_for_ucid("call-1") == [row(1)["event_id"], row(2)["event_id"]]
    assert store.event_ids_for_ucid("call-2") == [row(3)["event_id"]]
    assert store.event_ids_for_ucid(long_ucid) == [row(5)["event_id"]]
    assert store.event_ids_for_ucid(other_long) == [row(6)["event_id"]]
    assert store.event_ids_for_ucid("nobody") == []


def test_retention_removes_only_old_events(store: Store) -> None:
    now = 2_000_000.0
    store.add_events([row(1, stored_at=now - 8 * DAY_S), row(2, stored_at=now - 6 * DAY_S),
                      row(3, stored_at=now)])
    assert store.purge_events_older_than(7) == 1
    assert store.get_event_json(row(1)["event_id"]) is None
    assert store.get_event_json(row(2)["event_id"]) is not None
    assert store.count_events() == 2


def test_a_purge_deletes_in_bounded_batches_until_nothing_old_is_left(store: Store) -> None:
    store.add_events([row(n, seq=n, stored_at=float(n)) for n in range(1, 12)])
    statements: list[str] = []
    writer = store._writer

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            statements.append(statement)

    sa_event.listen(writer.engine, "before_cursor_execute", count)
    try:
        gone = purge_in_batches(writer, events, events.c.stored_at, 10.0, batch=4)
    finally:
        sa_event.remove(writer.engine, "before_cursor_execute", count)
    assert gone == 9
    assert len(statements) == 3  # 4 + 4 + 1: each batch its own bounded DELETE
    with store._engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() == 2


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=2**48), st.integers(min_value=0, max_value=2**62))
def test_an_entry_id_splits_into_its_two_numbers(ms: int, seq: int) -> None:
    assert entry_numbers(f"{ms}-{seq}") == (ms, seq)
    assert entry_numbers(str(ms)) == (ms, 0)


def plans_of(store: Store, call: Any) -> list[str]:
    """The query plan of every SELECT ``call`` runs (EXPLAIN of the statement as sent)."""
    seen: list[tuple[str, Any]] = []

    def capture(_conn: object, _cursor: object, statement: str, parameters: Any,
                *_: object) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    engine = store._engine
    sa_event.listen(engine, "before_cursor_execute", capture)
    try:
        call()
    finally:
        sa_event.remove(engine, "before_cursor_execute", capture)
    assert seen, "the call ran no SELECT"
    plans = []
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        sqlite_db = engine.dialect.name == "sqlite"
        if not sqlite_db:
            cursor.execute("SET enable_seqscan = off")  # tiny tables: ask for the index
        for statement, parameters in seen:
            cursor.execute(("EXPLAIN QUERY PLAN " if sqlite_db else "EXPLAIN ") + statement,
                           parameters)
            plans.append(" | ".join(str(r[-1]) for r in cursor.fetchall()))
    finally:
        raw.close()
    return plans


@pytest.mark.parametrize("what", ["event", "ucid", "window", "attempts", "dead letters",
                                  "retention", "record retention"])
def test_trace_replay_and_retention_queries_search_an_index_never_scan_the_table(
        store: Store, what: str) -> None:
    store.add_events([row(n, seq=n) for n in range(1, 20)])
    calls = {
        "event": lambda: store.get_event_json(row(3)["event_id"]),
        "ucid": lambda: store.event_ids_for_ucid("call-1"),
        "window": lambda: store.events_after("1700000000000-4", "+", limit=5),
        "attempts": lambda: store.list_attempts(event_id=row(3)["event_id"]),
        "dead letters": lambda: store.list_dead_letters(event_id=row(3)["event_id"]),
        "retention": lambda: store.purge_events_older_than(7),
        "record retention": lambda: store.purge_records_older_than(30),
    }
    for plan in plans_of(store, calls[what]):
        if store._engine.dialect.name == "sqlite":
            assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, plan
            assert "SCAN" not in plan.replace("SCAN CONSTANT ROW", ""), plan
        else:
            assert "Index" in plan and "Seq Scan" not in plan, plan
