"""The configuration database on SQLite and PostgreSQL: destinations, secrets, records."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from workers.destinations import Destination, parse_destination
from workers.errors import ConfigError, DestinationExists, DestinationNotFound, StoreError
from workers.http.signing import generate_secret
from workers.store.database import Store

KEY = "test-secret-key-0123456789"
SECRET = generate_secret()
STARTED = "RECORDING_STARTED_EVENT"


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every store test runs on SQLite and on a fresh PostgreSQL database (conftest)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/data/recnotify.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_store(database_url: str, clock: Clock) -> Iterator[Callable[..., Store]]:
    stores: list[Store] = []

    def make(secret_key: str | None = KEY, **kwargs: Any) -> Store:
        store = Store(database_url, secret_key, clock=clock, **kwargs)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def store(make_store: Callable[..., Store]) -> Store:
    s = make_store()
    s.upgrade()
    return s


def dest(name: str = "face-started", **fields: Any) -> Destination:
    data: dict[str, Any] = {
        "name": name,
        "events": [STARTED],
        "scope": "route:support-line",
        "url": "https://10.0.0.5:8443/Face/eventNotify",
        "params": "ucid=%UCID%",
    }
    return parse_destination({**data, **fields})


def raw_rows(store: Store) -> str:
    engine = create_engine(store.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT * FROM destinations")).all()
    finally:
        engine.dispose()
    return repr(rows)


def test_migrations_are_idempotent_and_start_at_version_zero(store: Store) -> None:
    store.upgrade()
    store.upgrade()
    assert store.version() == 0
    assert store.list_destinations() == []
    store.ping()


def test_sqlite_file_is_created_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "db.sqlite"
    store = Store(f"sqlite:///{path}")
    store.upgrade()
    store.close()
    assert path.exists()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_version_before_upgrade_says_to_run_db_upgrade(make_store: Callable[..., Store]) -> None:
    with pytest.raises(StoreError, match="recnotify db upgrade"):
        make_store().version()


def test_create_get_list_and_duplicate_create(store: Store) -> None:
    store.create(dest("b"))
    store.create(dest("a"))
    assert store.get("a") == dest("a")
    assert [d.name for d in store.list_destinations()] == ["a", "b"]
    with pytest.raises(DestinationExists, match="'a': name: already exists"):
        store.create(dest("a"))
    with pytest.raises(DestinationNotFound, match="no destination named 'zz'"):
        store.get("zz")


def test_every_destination_change_bumps_the_version(store: Store) -> None:
    versions = [store.version()]
    store.create(dest("a"))
    versions.append(store.version())
    assert store.save(dest("a", timeout_s=3)) is False
    versions.append(store.version())
    assert store.set_enabled("a", False) is True
    versions.append(store.version())
    assert store.remove("a") is True
    versions.append(store.version())
    assert versions == [0, 1, 2, 3, 4]


def test_no_op_changes_keep_the_version(store: Store) -> None:
    assert store.save(dest("a")) is True
    assert store.save(dest("a")) is False
    assert store.set_enabled("a", True) is False
    assert store.remove("missing") is False
    assert store.version() == 1


def test_set_enabled_is_stored(store: Store) -> None:
    store.save(dest("a"))
    store.set_enabled("a", False)
    assert store.get("a").enabled is False
    with pytest.raises(DestinationNotFound):
        store.set_enabled("missing", True)


def test_import_upserts_and_replace_removes_the_rest_in_one_version(store: Store) -> None:
    store.save(dest("keep"))
    store.save(dest("change"))
    store.save(dest("drop"))
    before = store.version()
    result = store.import_destinations(
        [dest("keep"), dest("change", timeout_s=5), dest("new")], replace=True
    )
    assert (result.created, result.updated, result.removed, result.unchanged) == (
        ["new"],
        ["change"],
        ["drop"],
        ["keep"],
    )
    assert store.version() == before + 1
    assert [d.name for d in store.list_destinations()] == ["change", "keep", "new"]


def test_import_without_replace_keeps_other_destinations(store: Store) -> None:
    store.save(dest("other"))
    result = store.import_destinations([dest("new")])
    assert result.removed == []
    assert {d.name for d in store.list_destinations()} == {"other", "new"}


def test_failed_import_changes_nothing(make_store: Callable[..., Store]) -> None:
    store = make_store()
    store.upgrade()
    store.save(dest("a"))
    keyless = make_store(secret_key=None)
    with pytest.raises(ConfigError, match="RECNOTIFY_SECRET_KEY"):
        keyless.import_destinations([dest("b"), dest("c", secret=SECRET)], replace=True)
    assert [d.name for d in store.list_destinations()] == ["a"]
    assert store.version() == 1


def test_secrets_are_encrypted_at_rest_and_decrypted_on_read(store: Store) -> None:
    d = dest(
        url="https://user:pa55word@h:8443/x",
        secret=SECRET,
        headers={"Authorization": {"value": "Bearer t0ken", "secret": True}, "X-Plain": "p"},
    )
    store.save(d)
    raw = raw_rows(store)
    for secret in (SECRET, SECRET.removeprefix("whsec_"), "pa55word", "t0ken"):
        assert secret not in raw
    assert "X-Plain" in raw
    assert store.get(d.name) == d
    assert store.list_destinations() == [d]


def test_storing_a_secret_without_a_key_says_how_to_set_it(
    make_store: Callable[..., Store],
) -> None:
    store = make_store(secret_key=None)
    store.upgrade()
    store.save(dest("plain"))
    with pytest.raises(ConfigError, match=r"export RECNOTIFY_SECRET_KEY=") as info:
        store.save(dest("signed", secret=SECRET))
    assert SECRET not in str(info.value)


def test_short_secret_key_is_refused(make_store: Callable[..., Store]) -> None:
    with pytest.raises(ConfigError, match="too short"):
        make_store(secret_key="short")


def test_wrong_key_says_the_key_changed(make_store: Callable[..., Store]) -> None:
    store = make_store()
    store.upgrade()
    store.save(dest(secret=SECRET))
    other = make_store(secret_key="a-different-key-entirely")
    with pytest.raises(StoreError, match="did it change") as info:
        other.list_destinations()
    assert SECRET not in str(info.value)


def test_rotated_secret_stays_active_for_the_overlap(
    make_store: Callable[..., Store], clock: Clock
) -> None:
    store = make_store(rotation_overlap_s=100.0)
    store.upgrade()
    new_secret = generate_secret()
    store.save(dest(secret=SECRET))
    store.save(dest(secret=new_secret))
    assert store.get("face-started").active_secrets(clock.now) == (new_secret, SECRET)
    clock.now += 101
    assert store.get("face-started").active_secrets(clock.now) == (new_secret,)
    store.save(dest(secret=new_secret, timeout_s=2))
    assert store.get("face-started").old_secrets == ()


def test_clearing_the_secret_drops_old_ones(store: Store) -> None:
    store.save(dest(secret=SECRET))
    store.save(dest(secret=generate_secret()))
    store.save(dest())
    assert store.get("face-started").active_secrets(0) == ()
    assert not store.get("face-started").has_secrets


def attempt(n: int, at: float, destination: str = "a", **extra: Any) -> dict[str, Any]:
    row = {
        "notification_id": f"n-{destination}",
        "event_id": "e1",
        "destination": destination,
        "attempt": n,
        "at": at,
        "status": 503,
        "error": None,
        "latency_ms": 12.5,
        "outcome": "retrying",
    }
    return {**row, **extra}


def test_attempts_are_listed_newest_first_with_filters(store: Store) -> None:
    store.add_attempts([attempt(1, 10.0), attempt(2, 20.0), attempt(1, 15.0, "b", event_id="e2")])
    assert [(r["destination"], r["attempt"]) for r in store.list_attempts()] == [
        ("a", 2),
        ("b", 1),
        ("a", 1),
    ]
    assert [r["at"] for r in store.list_attempts(destination="a")] == [20.0, 10.0]
    assert [r["destination"] for r in store.list_attempts(event_id="e2")] == ["b"]
    assert len(store.list_attempts(notification_id="n-a", limit=1, offset=1)) == 1
    assert store.list_attempts(destination="a")[0]["latency_ms"] == 12.5


def dead(nid: str, destination: str = "a", reason: str = "HTTP 500") -> dict[str, Any]:
    return {
        "notification_id": nid,
        "event_id": f"ev-{nid}",
        "destination": destination,
        "event": {"type": STARTED, "id": f"ev-{nid}"},
        "attempts": [{"attempt": 1, "status": 500}],
        "reason": reason,
    }


def test_dead_letters_upsert_by_notification_and_decode(store: Store) -> None:
    store.add_dead_letters([dead("n1"), dead("n2", "b")])
    store.add_dead_letters([dead("n1", reason="HTTP 404")])
    letters = store.list_dead_letters()
    assert [(d["notification_id"], d["reason"]) for d in letters] == [
        ("n1", "HTTP 404"),
        ("n2", "HTTP 500"),
    ]
    assert letters[0]["event"] == {"type": STARTED, "id": "ev-n1"}
    assert letters[0]["attempts"] == [{"attempt": 1, "status": 500}]
    assert [d["notification_id"] for d in store.list_dead_letters(destination="b")] == ["n2"]
    assert len(store.list_dead_letters(limit=1)) == 1


def test_take_dead_letters_removes_what_it_returns(store: Store) -> None:
    store.add_dead_letters([dead("n1"), dead("n2", "b"), dead("n3")])
    taken = store.take_dead_letters(destination="a")
    assert [d["notification_id"] for d in taken] == ["n1", "n3"]
    (n2,) = store.list_dead_letters()
    assert store.take_dead_letters(ids=[n2["id"]])[0]["notification_id"] == "n2"
    assert store.list_dead_letters() == []
    assert store.take_dead_letters() == []


def test_purge_dead_letters_by_destination_or_all(store: Store) -> None:
    store.add_dead_letters([dead("n1"), dead("n2", "b"), dead("n3", "b")])
    assert store.purge_dead_letters(destination="b") == 2
    assert store.purge_dead_letters() == 1
    assert store.list_dead_letters() == []


def test_records_older_than_retention_are_purged(store: Store, clock: Clock) -> None:
    day = 86400.0
    store.add_attempts([attempt(1, clock.now - 31 * day), attempt(2, clock.now - 1 * day)])
    store.add_dead_letters([{**dead("old"), "created_at": clock.now - 40 * day}, dead("new")])
    assert store.purge_records_older_than(30) == 2
    assert [r["attempt"] for r in store.list_attempts()] == [2]
    assert [d["notification_id"] for d in store.list_dead_letters()] == ["new"]


def test_audit_log_lists_newest_first(store: Store) -> None:
    store.add_audit("destination.create", actor="admin", target="a", remote_addr="127.0.0.1", at=1)
    store.add_audit("destination.remove", actor="admin", target="a", at=2)
    entries = store.list_audit(limit=10)
    assert [e["action"] for e in entries] == ["destination.remove", "destination.create"]
    assert entries[1]["remote_addr"] == "127.0.0.1"


def test_unreachable_database_raises_store_error_without_password() -> None:
    store = Store("postgresql+psycopg://u:hunter2@127.0.0.1:1/x")
    try:
        with pytest.raises(StoreError) as info:
            store.ping()
    finally:
        store.close()
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(store)
