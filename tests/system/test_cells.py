"""Cells end to end: two real Redis servers (cell a: the test Redis; cell b: a
redis-server of its own, with a password), a real ``recnotify worker`` on each, one
shared destination database, and a real receiver.

Checked from the receiver: a global destination gets every event exactly once (one
webhook-id and one request per event), an ordered destination gets each recording's
events in publish order, ``trace`` and ``dead-letters replay`` find the owning cell
(a 404 dead letter in each cell, replayed after the receiver is fixed, arrives, and its
event copy is back in its own cell's Redis only), and with cell b's redis-server stopped,
publishes to b are refused naming cell b (password masked) while cell a keeps
delivering."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from producer import Publisher, PublishError
from producer.cells import CellRouter
from producer.constants import events_key
from tests.helpers import ROOT, WorkerFactory, fast_retry
from tests.receiver import Receiver
from workers.http.request import notification_id
from workers.ops.embedded import free_port

PASSWORD = "cellb-s3cret"
LIFECYCLE = ["RECORDING_STARTED_EVENT", "SEGMENT_STARTED_EVENT", "SEGMENT_ENDED_EVENT",
             "RECORDING_ENDED_EVENT"]


@dataclass
class RedisServer:
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://:{PASSWORD}@127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@pytest.fixture
def cell_b_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own (no persistence), always stopped at the end."""
    port = free_port()
    directory = tmp_path / "redis-b"
    directory.mkdir()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(directory), "--requirepass", PASSWORD],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    server = RedisServer(port, proc)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis.from_url(server.url, socket_timeout=1).ping():
                    break
            except redis.RedisError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "redis-server b"
            time.sleep(0.05)
        yield server
    finally:
        server.stop()


def config(receiver: Receiver, dead_accounts: list[str]) -> str:
    retry = json.dumps(fast_retry())
    gone = "".join(f"""
  - name: gone-{account}
    events: [RECORDING_STARTED_EVENT]
    scope: account:{account}
    url: {receiver.url("/gone")}
    method: POST
    retry: {retry}
""" for account in dead_accounts)
    return f"""destinations:
  - name: everything
    events: all
    scope: global
    url: {receiver.url("/global")}
    method: POST
    retry: {retry}
  - name: ordered
    events: all
    scope: global
    url: {receiver.url("/ordered")}
    method: POST
    ordered: true
    retry: {retry}
{gone}"""


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workers", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)


def wait_until(check: object, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_two_cells_deliver_once_in_order_trace_replay_and_survive_a_dead_cell(
        workers: WorkerFactory, cell_b_redis: RedisServer, receiver: Receiver,
        redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    cell_a = workers  # the test Redis; the same data dir, so one shared SQLite database
    cell_b = WorkerFactory(redis_url=cell_b_redis.url, key_prefix=key_prefix,
                           tmp_path=tmp_path)
    cells = f"a={redis_url},b={cell_b_redis.url}"
    router = CellRouter.parse(cells)
    accounts = [f"tenant-{i}" for i in range(12)]
    in_cell = {a: router.cells[router.index_for(account=a)].name for a in accounts}
    assert set(in_cell.values()) == {"a", "b"}, in_cell  # both cells get tenants
    dead_a = next(a for a in accounts if in_cell[a] == "a")
    dead_b = next(a for a in accounts if in_cell[a] == "b")
    receiver.script("/gone", [404])  # a dead letter (410 would also disable it)
    cell_a.configure(config(receiver, [dead_a, dead_b]))
    env = {**cell_a.env(), "RECNOTIFY_CELLS": cells, "RECNOTIFY_PUBLISH_TIMEOUT_S": "1"}
    env.pop("RECNOTIFY_REDIS_URL")
    try:
        cell_a.start(node="cell-a0")
        cell_b.start(node="cell-b0")

        # -- publish: 24 recordings of 4 events, interleaved, each routed by its account --
        publisher = Publisher(cells=cells, key_prefix=key_prefix)
        recordings = [(a, f"{a}-call-{n}@10.0.0.1") for a in accounts for n in range(2)]
        published: dict[str, tuple[str, str]] = {}  # event id -> (account, UCID)
        started: set[str] = set()  # the RECORDING_STARTED_EVENT ones (the gone-* destinations')
        for event_type in LIFECYCLE:
            for account, ucid in recordings:
                event_id = publisher.publish(event_type, account=account,
                                             params={"UCID": ucid})
                published[event_id] = (account, ucid)
                if event_type == LIFECYCLE[0]:
                    started.add(event_id)
        # and one from the command line, for a cell-b tenant
        done = cli(env, "publish", "RECORDING_STARTED_EVENT", "--account", dead_b,
                   "--param", "UCID=cli-call@10.0.0.1")
        assert done.returncode == 0, done.stderr
        cli_event = done.stdout.strip()
        published[cli_event] = (dead_b, "cli-call@10.0.0.1")
        started.add(cli_event)

        # each event is in its own cell's stream, and only there
        for cell, factory in (("a", cell_a), ("b", cell_b)):
            ids = {json.loads(f[b"event"])["id"]
                   for _, f in factory.redis.xrange(events_key(key_prefix))}
            assert ids == {e for e, (acct, _) in published.items() if in_cell[acct] == cell}

        # -- the global destination: every event exactly once -----------------------------
        receiver.wait_for(len(published), lambda r: r.path == "/global", timeout_s=60)
        time.sleep(1.0)  # a duplicate would arrive now
        seen = receiver.received(lambda r: r.path == "/global")
        per_event = Counter(r.json()["id"] for r in seen)
        assert per_event == Counter({e: 1 for e in published})
        hooks = defaultdict(set)
        for r in seen:
            hooks[r.json()["id"]].add(r.header("webhook-id"))
        assert all(len(ids) == 1 for ids in hooks.values())

        # -- the ordered destination: each recording in publish order ----------------------
        receiver.wait_for(len(published), lambda r: r.path == "/ordered", timeout_s=60)
        order: dict[str, list[str]] = defaultdict(list)
        for r in receiver.received(lambda r: r.path == "/ordered" and r.status == 200):
            order[r.json()["params"]["UCID"]].append(r.json()["type"])
        for _, ucid in recordings:
            assert order[ucid] == LIFECYCLE, (ucid, order[ucid])

        # -- dead letters in both cells; trace finds the owning cell ------------------------
        first_b = next(e for e, (acct, ucid) in published.items()
                       if acct == dead_b and ucid == f"{dead_b}-call-0@10.0.0.1")
        first_a = next(e for e, (acct, ucid) in published.items()
                       if acct == dead_a and ucid == f"{dead_a}-call-0@10.0.0.1")
        expected_dead = {e for e in started if published[e][0] in (dead_a, dead_b)}
        dead_count = len(expected_dead)  # 2 recordings each of dead_a and dead_b, + the CLI one
        letters = cell_a.wait_dead_letters(dead_count, timeout_s=30)
        assert {d["event_id"] for d in letters} == expected_dead, (
            expected_dead - {d["event_id"] for d in letters}, cell_b.all_logs()[-3000:])
        traced = cli(env, "trace", first_b)
        assert traced.returncode == 0, traced.stderr
        assert f"event {first_b}: RECORDING_STARTED_EVENT  (cell b)" in traced.stdout
        assert f"gone-{dead_b}  [dead]" in traced.stdout
        assert "everything  [delivered]" in traced.stdout, traced.stdout
        traced_a = cli(env, "trace", first_a, "--json")
        assert json.loads(traced_a.stdout)[0]["cell"] == "a"

        # -- fix the receiver, replay: each goes back through its own cell ------------------
        receiver.script("/gone", [200])
        replayed = cli(env, "dead-letters", "replay")
        assert replayed.returncode == 0, replayed.stderr
        per_cell = Counter(in_cell[published[d["event_id"]][0]] for d in letters)
        assert replayed.stdout.strip() == (f"replayed {dead_count} dead letter(s): "
                                           f"cell a {per_cell['a']}, cell b {per_cell['b']}")
        replayed_ids = {d["event_id"] for d in letters}
        receiver.wait_for(dead_count, lambda r: r.path == "/gone" and r.status == 200
                          and r.json()["id"] in replayed_ids, timeout_s=30)
        assert cell_a.store.list_dead_letters() == []
        assert cell_b.redis.exists(f"{key_prefix}ev:{first_b}")
        assert not cell_a.redis.exists(f"{key_prefix}ev:{first_b}")
        wait_until(lambda: "[delivered]" in cli(env, "trace", first_b).stdout.split(
            f"gone-{dead_b}")[1].splitlines()[0], "the replayed one delivered in cell b")

        # -- a backfill to a destination made now: each event through its own cell ----------
        cell_a.configure(f"""destinations:
  - name: late
    events: [RECORDING_ENDED_EVENT]
    scope: global
    url: {receiver.url("/late")}
    method: POST
    retry: {json.dumps(fast_retry())}
""")
        type_of = {r.json()["id"]: r.json()["type"] for r in seen}
        ended = {e for e in published if type_of[e] == LIFECYCLE[-1]}
        assert len(ended) == len(recordings)
        backfilled = cli(env, "replay", "--destination", "late")
        assert backfilled.returncode == 0, backfilled.stderr
        per_cell_ended = Counter(in_cell[published[e][0]] for e in ended)
        done_lines = [line.split(": ", 1)[1] for line in backfilled.stdout.splitlines()
                      if " done: " in line]
        assert done_lines == [
            f"{per_cell_ended[c]} notification(s) for {per_cell_ended[c]} event(s) to late "
            f"in cell {c}" for c in ("a", "b")], backfilled.stdout
        receiver.wait_for(len(ended), lambda r: r.path == "/late", timeout_s=60)
        time.sleep(1.0)  # a duplicate would arrive now
        assert Counter(r.json()["id"] for r in receiver.received(lambda r: r.path == "/late")
                       ) == Counter({e: 1 for e in ended})
        for e in ended:  # its notification's state is in its own cell's Redis only
            nkey = f"{key_prefix}n:{notification_id(e, 'late')}"
            owner, other = (cell_a, cell_b) if in_cell[published[e][0]] == "a" else (
                cell_b, cell_a)
            assert owner.redis.exists(nkey) and not other.redis.exists(nkey), e

        # -- cell b down: its tenants are refused, cell a keeps working ---------------------
        cell_b_redis.stop()
        for proc in cell_b.procs:  # nothing left to serve; do not wait 20 s for them
            cell_b.kill(proc)
        down = Publisher(cells=cells, key_prefix=key_prefix, publish_timeout_s=1)
        with pytest.raises(PublishError) as caught:
            down.publish("RECORDING_STARTED_EVENT", account=dead_b)
        assert caught.value.cell == "b"
        assert str(caught.value).startswith(
            f"cell b (redis://:***@127.0.0.1:{cell_b_redis.port}/0): event ")
        assert "was NOT published" in str(caught.value) and PASSWORD not in str(caught.value)
        refused = cli(env, "publish", "RECORDING_STARTED_EVENT", "--account", dead_b)
        assert refused.returncode == 1 and PASSWORD not in refused.stderr
        assert refused.stderr.startswith(f"error: cell b (redis://:***@127.0.0.1:"
                                         f"{cell_b_redis.port}/0): event "), refused.stderr
        still = [down.publish("RECORDING_STARTED_EVENT", account=a,
                              params={"UCID": uuid.uuid4().hex})
                 for a in accounts if in_cell[a] == "a"]
        # every one of them arrives (concurrent deliveries: in any order)
        receiver.wait_for(len(still), lambda r: r.path == "/global"
                          and r.json()["id"] in still, timeout_s=60)
        down.close()
        publisher.close()
    finally:
        cell_b.stop_all()
