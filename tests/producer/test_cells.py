"""Cells (producer/cells.py): the routing of an event to a cell, pure, and a Publisher
with one cell that answers and one that does not."""

from __future__ import annotations

import json

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from producer import InvalidPublishOption, Publisher, PublishError
from producer.cells import CellRouter, configured_router, hash_index, parse_cells
from producer.constants import events_key
from workers.ops.embedded import free_port

URLS = ("redis://a:6379/0", "redis://b:6379/0", "redis://c:6379/0")
names = st.text(min_size=1, max_size=30)


@given(names, st.integers(min_value=1, max_value=64))
def test_the_hash_is_stable_and_in_range(account: str, count: int) -> None:
    router = CellRouter.parse([f"redis://h{i}:6379/0" for i in range(count)])
    index = router.index_for(account=account)
    assert 0 <= index < count
    assert index == router.index_for(account=account, realm="any", route="other")
    assert index == hash_index(account, count)


def test_the_hash_is_sha256_so_every_language_can_compute_it() -> None:
    # sha256("acme") starts with 0x8e...: documented so a producer in another language agrees
    import hashlib

    digest = hashlib.sha256(b"acme").digest()
    assert hash_index("acme", 3) == int.from_bytes(digest[:8], "big") % 3


@given(st.dictionaries(names.filter(lambda s: "," not in s and "=" not in s and s.strip() == s),
                       st.integers(min_value=0, max_value=2), max_size=8), names)
def test_the_table_pins_tenants_whatever_the_hash_says(table: dict[str, int],
                                                       account: str) -> None:
    router = CellRouter.parse(list(URLS), table)
    for tenant, index in table.items():
        assert router.index_for(account=tenant) == index
    if account not in table:
        assert router.index_for(account=account) == hash_index(account, 3)


def test_a_resize_keeps_the_pinned_tenants_where_they_were() -> None:
    accounts = [f"tenant-{i}" for i in range(200)]
    two = CellRouter.parse(list(URLS[:2]))
    pins = {a: two.index_for(account=a) for a in accounts[:20]}
    three = CellRouter.parse(list(URLS), pins)
    assert all(three.index_for(account=a) == i for a, i in pins.items())
    moved = sum(two.index_for(account=a) != three.index_for(account=a) for a in accounts[20:])
    assert moved > 0  # the unpinned ones do move: that is why the table exists


def test_events_spread_over_the_cells() -> None:
    router = CellRouter.parse(list(URLS))
    counts = [0, 0, 0]
    for i in range(3000):
        counts[router.index_for(account=f"acct-{i}")] += 1
    assert all(800 < c < 1200 for c in counts), counts


def test_no_account_uses_the_realm_then_the_route_then_cell_0() -> None:
    router = CellRouter.parse(list(URLS))
    assert router.index_for(realm="eu") == hash_index("realm:eu", 3)
    assert router.index_for(route="sales") == hash_index("route:sales", 3)
    assert router.index_for(realm="eu", route="sales") == hash_index("realm:eu", 3)
    assert router.index_for() == 0
    assert router.cell_of_event({"account": None, "realm": "eu", "route": "x"}).index == \
        hash_index("realm:eu", 3)


def test_cells_may_be_named_and_the_table_may_use_names_or_indexes() -> None:
    router = CellRouter.parse(
        "a=redis://h1:6379/0, b=sentinel://s1:26379;sentinel://s2:26379/0?master_name=m",
        "bigcorp=b,acme=0")
    assert [c.name for c in router.cells] == ["a", "b"]
    assert router.cells[1].url == "sentinel://s1:26379;sentinel://s2:26379/0?master_name=m"
    assert dict(router.table) == {"bigcorp": 1, "acme": 0}
    assert [c.name for c in parse_cells(list(URLS))] == ["0", "1", "2"]


@pytest.mark.parametrize(("cells", "table", "says"), [
    ("", "", "no cells given"),
    ("redis://a/0,nothing", "", "cell 1 in RECNOTIFY_CELLS is 'nothing', not a Redis URL"),
    ("a=redis://a/0,a=redis://b/0", "", "cell name 'a' is given twice"),
    ("redis://a/0,redis://b/0", "bigcorp=2", "sends account 'bigcorp' to cell '2', which is "
                                             "not a cell; the cells are 0, 1"),
    ("redis://a/0", "bigcorp", "'bigcorp' in RECNOTIFY_CELL_TABLE is not ACCOUNT=CELL"),
    ("redis://a/0,redis://b/0", "x=0,x=1", "sends account 'x' to two cells"),
])
def test_a_bad_configuration_is_one_line_saying_what_is_wrong(cells: str, table: str,
                                                              says: str) -> None:
    with pytest.raises(InvalidPublishOption) as caught:
        CellRouter.parse(cells, table)
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_a_password_never_shows_in_a_cell_name() -> None:
    (cell,) = parse_cells("redis://:s3cret@h:6379/0")
    assert "s3cret" not in str(cell) and str(cell) == "cell 0 (redis://:***@h:6379/0)"


def test_the_environment_gives_cells_unless_a_url_is_given() -> None:
    env = {"RECNOTIFY_CELLS": ",".join(URLS), "RECNOTIFY_CELL_TABLE": "big=2"}
    router = configured_router(None, None, explicit_url=None, env=env)
    assert router is not None and router.urls == URLS and dict(router.table) == {"big": 2}
    assert configured_router(None, None, explicit_url="redis://x/0", env=env) is None
    assert configured_router(None, None, explicit_url=None, env={}) is None
    given_router = configured_router(list(URLS[:2]), "big=1", explicit_url=None, env=env)
    assert given_router is not None and dict(given_router.table) == {"big": 1}


# -- a Publisher with two cells, one of them down ---------------------------------------------
def test_a_cell_that_is_down_refuses_its_own_events_only(redis_url: str, key_prefix: str,
                                                         redis_client: redis.Redis) -> None:
    down = f"redis://:pw@127.0.0.1:{free_port()}/0"  # nothing listens there
    router = CellRouter.parse([redis_url, down])
    up_account = next(f"a{i}" for i in range(100) if router.index_for(account=f"a{i}") == 0)
    down_account = next(f"a{i}" for i in range(100) if router.index_for(account=f"a{i}") == 1)
    publisher = Publisher(cells=router, key_prefix=key_prefix, publish_timeout_s=0.5)
    try:
        event_id = publisher.publish("RECORDING_STARTED_EVENT", account=up_account)
        with pytest.raises(PublishError) as caught:
            publisher.publish("RECORDING_STARTED_EVENT", account=down_account)
        assert caught.value.cell == "1"
        message = str(caught.value)
        assert message.startswith(f"cell 1 (redis://:***@127.0.0.1:{down.rsplit(':', 1)[1]}")
        assert "was NOT published" in message and "pw" not in message
        assert publisher.publish("RECORDING_ENDED_EVENT", account=up_account)
    finally:
        publisher.close()
    entries = redis_client.xrange(events_key(key_prefix))
    assert [json.loads(f[b"event"])["account"] for _, f in entries] == [up_account] * 2
    assert json.loads(entries[0][1][b"event"])["id"] == event_id
