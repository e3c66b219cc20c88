"""Delivery guarantees under faults (SPEC 3 and 6), on real workers, Redis and receivers.

The fault harness itself (``python -m tests.faults --quick``) runs as the first
test; the others each prove one guarantee on its own.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.helpers import ROOT, WorkerFactory
from tests.receiver import Receiver
from workers.http.request import notification_id
from workers.ops.embedded import EmbeddedRedis
from workers.taskqueue.app import create_app

pytestmark = pytest.mark.slow


def dest_yaml(name: str, url: str, **extra: object) -> str:
    lines = [f"  - name: {name}", "    events: all", "    scope: global", f"    url: '{url}'",
             "    params: 'e=%EVENTID%'"]
    lines += [f"    {key}: {json.dumps(value)}" for key, value in extra.items()]
    return "destinations:\n" + "\n".join(lines) + "\n"


def publish(factory: WorkerFactory, n: int) -> list[str]:
    pub = factory.publisher()
    return [pub.publish("RECORDING_STARTED_EVENT", params={"UCID": f"u{i}"}) for i in range(n)]


def wait_until(predicate: object, timeout_s: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout_s} s")
        time.sleep(0.1)


def test_quick_fault_harness_loses_nothing_and_duplicates_only_with_the_same_id() -> None:
    proc = subprocess.run([sys.executable, "-m", "tests.faults", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    figure = proc.stdout.strip().splitlines()[-1]
    fields = dict(item.split("=") for item in figure.split())
    assert int(fields["sent"]) >= 900, figure
    assert fields["lost"] == "0", proc.stdout[-3000:]
    assert fields["duplicated"] == fields["duplicated_same_id"], figure
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_open_circuit_parks_notifications_without_spending_their_attempts(
        workers: WorkerFactory, receiver: Receiver) -> None:
    receiver.script("/flaky", [503, 503, 200])
    # The retry span (0.5+1+2+4 = 7.5 s) is well beyond the circuit's reset (1 s): parked
    # notifications are still within their span when the probe closes the circuit (with
    # a span shorter than the reset they would rightly end as dead letters instead).
    workers.configure(dest_yaml("flaky", receiver.url("/flaky"),
                                retry={"max_attempts": 5, "backoff_s": 0.5,
                                       "backoff_max_s": 4},
                                circuit={"failures": 2, "reset_s": 1}))
    workers.start()
    client = workers.redis
    circuit = workers.settings.keys.circuit("flaky")
    (first,) = publish(workers, 1)
    wait_until(lambda: client.hget(circuit, "state") == b"open", what="circuit open")
    later = publish(workers, 4)
    # While open, the later notifications wait: nothing reaches the receiver ...
    wait_until(lambda: client.hget(workers.settings.keys.metric("notifications"),
                                   "flaky|waits") is not None, what="a parked notification")
    assert len(receiver.received()) == 2
    # ... and `recnotify trace` shows a parked one as pending, with why (SPEC 6)
    from workers.ops.tracing import trace_event

    parked = [n for eid in later for n in trace_event(workers.settings, eid)["notifications"]
              if n.get("waiting")]
    assert parked and all(n["state"] == "pending" and n["waiting"] == "circuit open"
                          for n in parked)
    # ... then one probe succeeds, the circuit closes and every notification is delivered.
    got = receiver.wait_for(7)
    delivered = {r.query["e"][0] for r in got[2:]}
    assert delivered == {first, *later}
    for eid in later:  # one attempt each: waiting spent none
        key = workers.settings.keys.notification(notification_id(eid, "flaky"))
        wait_until(lambda k=key: client.hget(k, "state") == b"delivered", what="state")
        assert client.hget(key, "attempts") == b"1"
    assert client.hget(circuit, "state") is None


def test_open_circuit_of_a_dead_destination_ends_in_dead_letters_within_the_span(
        workers: WorkerFactory) -> None:
    workers.configure(dest_yaml("gone", "http://127.0.0.1:9/nothing",
                                retry={"max_attempts": 2, "backoff_s": 0.05,
                                       "backoff_max_s": 0.1},
                                circuit={"failures": 1, "reset_s": 1}))
    workers.start()
    ids = publish(workers, 6)
    letters = workers.wait_dead_letters(6, timeout_s=60)
    assert {d["event_id"] for d in letters} == set(ids)
    assert any("circuit open" in d["reason"] for d in letters), [d["reason"] for d in letters]


def concurrency(arrivals: list[float], hold_s: float) -> int:
    """Most requests in progress at once, from arrival times and the receiver's delay."""
    return max(sum(1 for b in arrivals if a <= b < a + hold_s) for a in arrivals)


def test_max_in_flight_and_rate_limit_hold_across_workers(
        workers: WorkerFactory) -> None:
    with Receiver(delay_s=0.3) as slow, Receiver() as fast:
        workers.configure(dest_yaml("capped", slow.url("/capped"), max_in_flight=2))
        workers.configure(dest_yaml("paced", fast.url("/paced"), rate_limit_per_s=5))
        workers.start(concurrency=8)
        workers.start(concurrency=8)
        publish(workers, 20)
        capped = slow.wait_for(20, timeout_s=60)
        paced = fast.wait_for(20, timeout_s=60)
    in_flight = concurrency([r.at for r in capped], 0.3)
    times = sorted(r.at for r in paced)
    per_second = max(sum(1 for t in times if a <= t < a + 1.0) for a in times)
    print(f"max_in_flight=2: at most {in_flight} at once; rate 5/s: at most {per_second} "
          f"in any 1 s window (bucket capacity 5 + refill)")
    assert in_flight <= 2
    assert per_second <= 5 + 5  # one second of burst plus one second of refill


def test_410_gone_disables_the_destination_logs_an_error_and_counts_it(
        workers: WorkerFactory, receiver: Receiver) -> None:
    receiver.script("/gone", [410])
    workers.configure(dest_yaml("retired", receiver.url("/gone")))
    proc = workers.start()
    publish(workers, 1)
    (letter,) = workers.wait_dead_letters(1)
    assert letter["reason"] == "HTTP 410"
    wait_until(lambda: not workers.store.get("retired").enabled, what="destination disabled")
    assert workers.redis.hget(workers.settings.keys.metric("disabled"), "retired|410") == b"1"
    assert "ERROR" in workers.log(proc) and "410 Gone" in workers.log(proc)


def test_sigterm_finishes_in_flight_deliveries_and_leaves_the_rest_queued(
        workers: WorkerFactory) -> None:
    with Receiver(delay_s=1.5) as slow:
        workers.configure(dest_yaml("slow", slow.url("/slow"), timeout_s=10))
        proc = workers.start(concurrency=2)
        ids = publish(workers, 8)
        slow.wait_for(2, timeout_s=30)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        started = {r.query["e"][0] for r in slow.received()}
        for eid in started:  # every delivery in flight at SIGTERM was finished
            state = workers.redis.hget(
                workers.settings.keys.notification(notification_id(eid, "slow")), "state")
            assert state == b"delivered", (eid, state)
        assert len(started) < len(ids)  # the rest were still queued ...
        # ... in Redis: the prefetched ones too, pushed back by the warm shutdown (kombu's
        # QoS holds them in memory only; the watchdog is not needed for them)
        assert workers.redis.llen(workers.settings.keys.deliver_queue) == len(ids) - len(started)
        workers.start(concurrency=4, node="after")
        got = slow.wait_for(len(ids), timeout_s=60)  # ... and a new worker delivers them
        assert {r.query["e"][0] for r in got} == set(ids)


def test_poison_task_becomes_a_dead_letter_and_the_worker_keeps_delivering(
        workers: WorkerFactory, receiver: Receiver) -> None:
    workers.configure(dest_yaml("hook", receiver.url("/hook")))
    proc = workers.start()
    workers.redis.set(workers.settings.keys.event("poison-1"), b"{not json")
    create_app(workers.settings).send_task("recnotify.deliver", args=("poison-1", "hook"))
    (letter,) = workers.wait_dead_letters(1)
    assert letter["event_id"] == "poison-1" and "internal error" in letter["reason"]
    (good,) = publish(workers, 1)
    (got,) = receiver.wait_for(1)
    assert got.query["e"] == [good] and proc.poll() is None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis", appendonly=False).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(tmp_path / "redis", ignore_errors=True)


def test_redis_restart_without_persistence_recreates_the_group_and_says_what_was_lost(
        own_redis: EmbeddedRedis, receiver: Receiver, tmp_path: Path) -> None:
    factory = WorkerFactory(redis_url=own_redis.url, key_prefix="np:", tmp_path=tmp_path)
    try:
        factory.configure(dest_yaml("hook", receiver.url("/hook")))
        proc = factory.start()
        publish(factory, 1)
        receiver.wait_for(1)
        own_redis.stop()
        time.sleep(2)
        own_redis.start()
        time.sleep(8)  # workers reconnect (and must not spin while doing it)
        (after,) = publish(factory, 1)
        got = receiver.wait_for(2, timeout_s=60)
        assert got[-1].query["e"] == [after]
        log = factory.log(proc)
        assert "LOST" in log and "consumer group" in log
        assert len(log.splitlines()) < 400, "bounded logging while Redis was away"
        assert proc.poll() is None
    finally:
        factory.stop_all()


def test_database_outage_keeps_delivering_from_cache_and_writes_records_when_back(
        workers: WorkerFactory, receiver: Receiver, postgres_url: str) -> None:
    from sqlalchemy import create_engine, text

    workers.use_database(postgres_url)
    workers.configure(dest_yaml("hook", receiver.url("/hook")))
    workers.start()
    publish(workers, 2)
    receiver.wait_for(2)
    db = postgres_url.rsplit("/", 1)[1]
    admin = create_engine(postgres_url.rsplit("/", 1)[0] + "/postgres",
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS false'))
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = :n"), {"n": db})
    try:
        during = publish(workers, 5)
        got = receiver.wait_for(7, timeout_s=30)
        assert {r.query["e"][0] for r in got[2:]} == set(during)
        records = redis.Redis.from_url(workers.redis_url).llen(workers.settings.keys.records)
        assert records > 0, "attempt records wait in Redis while the database is away"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true'))
        admin.dispose()
    workers._store = None  # a fresh engine: the old pool's connections were terminated
    wait_until(lambda: len(workers.store.list_attempts(destination="hook", limit=100)) == 7,
               timeout_s=60, what="all 7 attempt records in the database")


def test_sqlite_write_lock_keeps_delivering_and_records_follow_when_released(
        workers: WorkerFactory, receiver: Receiver) -> None:
    """SQLite "briefly unavailable": another process holds its write lock for seconds."""
    import sqlite3

    from sqlalchemy.engine import make_url

    path = make_url(workers.settings.effective_database_url).database
    assert path and path != ":memory:", workers.settings.effective_database_url
    workers.configure(dest_yaml("hook", receiver.url("/hook")))
    workers.start()
    publish(workers, 2)
    receiver.wait_for(2)
    wait_until(lambda: len(workers.store.list_attempts(destination="hook", limit=100)) == 2,
               timeout_s=30, what="the first 2 attempt records in the database")
    # Given a writer holding SQLite's write lock (WAL: readers still read)
    locker = sqlite3.connect(path, timeout=1)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        # When events are published meanwhile, they are delivered without waiting for it
        during = publish(workers, 5)
        got = receiver.wait_for(7, timeout_s=5)
        assert {r.query["e"][0] for r in got[2:]} == set(during)
        time.sleep(1.0)  # the flusher has had its turn, and could not write
        assert len(workers.store.list_attempts(destination="hook", limit=100)) == 2
        records = redis.Redis.from_url(workers.redis_url).llen(workers.settings.keys.records)
        assert records > 0, "attempt records wait in Redis while the database is locked"
    finally:
        locker.rollback()
        locker.close()
    # Then, the lock released, every attempt record reaches the database
    wait_until(lambda: len(workers.store.list_attempts(destination="hook", limit=100)) == 7,
               timeout_s=60, what="all 7 attempt records in the database")
