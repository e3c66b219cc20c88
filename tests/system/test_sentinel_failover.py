"""Failover while notifications flow: real sentinels, steady publishers, real workers.

One flow serves the module: two publisher threads at once (100 events/s each through
``producer.Publisher`` on the ``sentinel://`` URL; one plain, one with
``durable_replicas=1``) into a real ``recnotify worker`` and a real receiver. The
primary fails once with ``SENTINEL FAILOVER`` (the flow then waits until the old
primary is demoted and replicates from the new one: the sentinels do that on their
10 s INFO round) and once with ``kill -9`` (the killed server is started again as a
replica). Lost = acknowledged by ``publish()``, never delivered.

- Plain publish: Redis replicates asynchronously. After ``SENTINEL FAILOVER`` the old
  primary keeps accepting writes until it is demoted, and drops them then; a
  ``kill -9`` loses what had not reached the replica. The test asserts every loss
  was acknowledged in a failover window (1 s before the fault until 1 s after the
  old primary was demoted / the new one answered) and prints the counts.
- Durable publish: nothing acknowledged is lost, in both faults.

On one host a ``kill -9`` alone rarely loses anything: the kernel still sends what
Redis had written to the replication socket. A replica that lags (here: SIGSTOP for
0.6 s under 8 KB events) is what makes a ``kill -9`` lose acknowledged events; the
last test measures that, plain against durable.

Both check that no publish hung: each returned or raised within ``publish_timeout_s``
(plus the durable wait). ``RECNOTIFY_TEST_SENTINEL_SOAK_S=SECONDS`` (opt-in)
lengthens each steady phase (default 1 s) for a soak run.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from producer import Publisher, PublishError
from tests.failover import FlowingPublisher, destination_yaml, in_stream, wait_delivered
from tests.helpers import WorkerFactory
from tests.receiver import Receiver
from tests.sentinel import SentinelSetup

pytestmark = pytest.mark.slow

STEADY_S = float(os.environ.get("RECNOTIFY_TEST_SENTINEL_SOAK_S") or 1.0)
PUBLISH_TIMEOUT_S = 5.0
#: Asynchronous replication: an acknowledged event can only be lost this close to a fault.
WINDOW_SLACK_S = 1.0


@dataclass
class Fault:
    name: str
    started: float
    settled: float  # FAILOVER: the old primary replicates from the new; kill: new answers
    switched_s: float = 0.0


@dataclass
class Flow:
    plain: FlowingPublisher
    durable: FlowingPublisher
    faults: list[Fault] = field(default_factory=list)
    recovered: float = 0.0
    missing: set[str] = field(default_factory=set)
    logs: str = ""

    def lost(self, publisher: FlowingPublisher, fault: Fault | None = None) -> set[str]:
        acked = (publisher.acked() if fault is None else
                 publisher.acked(fault.started - WINDOW_SLACK_S, fault.settled + WINDOW_SLACK_S))
        return self.missing & acked

    def report(self, publisher: FlowingPublisher, name: str) -> str:
        faults = ", ".join(f"{f.name}: new primary in {f.switched_s:.1f} s, settled in "
                           f"{f.settled - f.started:.1f} s, lost {len(self.lost(publisher, f))}"
                           for f in self.faults)
        return (f"[failover {name}] published {len(publisher.outcomes)}, acknowledged "
                f"{len(publisher.acked())}, lost {len(self.lost(publisher))} ({faults}); "
                f"publish errors {len(publisher.errors())}, durable retries "
                f"{sum(o.durable_retries for o in publisher.outcomes)}, longest publish "
                f"{publisher.max_latency_s():.2f} s")


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flow]:
    root = tmp_path_factory.mktemp("failover")
    setup = SentinelSetup(root / "sentinel")
    try:
        setup.start()
        with Receiver() as receiver:
            yield run_flow(root, setup, receiver)
    finally:
        setup.stop()


def run_flow(root: Path, setup: SentinelSetup, receiver: Receiver) -> Flow:
    factory = WorkerFactory(redis_url=setup.url, key_prefix=f"rnfo-{uuid.uuid4().hex[:8]}:",
                            tmp_path=root)
    factory.configure(destination_yaml(receiver))
    result = Flow(
        FlowingPublisher(setup.url, factory.key_prefix, tag="p",
                         publish_timeout_s=PUBLISH_TIMEOUT_S),
        FlowingPublisher(setup.url, factory.key_prefix, tag="d", durable_replicas=1,
                         publish_timeout_s=PUBLISH_TIMEOUT_S))
    publishers = (result.plain, result.durable)
    try:
        factory.start(concurrency=8)
        for publisher in publishers:
            publisher.start()
        time.sleep(STEADY_S)
        started = time.monotonic()
        _old, new = setup.failover()
        switched = time.monotonic()
        setup.wait_replicated(new, 1, timeout_s=30)  # the old primary, demoted
        result.faults.append(Fault("SENTINEL FAILOVER", started, time.monotonic(),
                                   switched - started))
        time.sleep(STEADY_S)
        started = time.monotonic()
        old, _new = setup.kill_primary()
        result.faults.append(Fault("kill -9", started, time.monotonic(),
                                   time.monotonic() - started))
        setup.restart_as_replica(old)
        result.recovered = time.monotonic()
        time.sleep(STEADY_S)
        for publisher in publishers:
            publisher.stop()
        acked = result.plain.acked() | result.durable.acked()
        result.missing = wait_delivered(receiver, acked, timeout_s=40, quiet_s=8)
    finally:
        for publisher in publishers:
            publisher.stop()
        result.logs = factory.all_logs()[-3000:]
        factory.stop_all()
    print("\n" + result.report(result.plain, "plain") + "\n"
          + result.report(result.durable, "durable"))
    return result


def _no_publish_hung(publisher: FlowingPublisher) -> None:
    bound = PUBLISH_TIMEOUT_S + publisher.durable_replicas * publisher.durable_timeout_ms / 1000
    slow = [o for o in publisher.outcomes if o.finished - o.started > bound + 0.5]
    assert not slow, f"{len(slow)} publish call(s) took longer than {bound + 0.5} s"
    for outcome in publisher.errors():
        assert outcome.error and ("NOT published" in outcome.error
                                  or "may also still be delivered" in outcome.error), outcome


def test_plain_publish_loses_only_events_acknowledged_in_a_failover_window(flow: Flow) -> None:
    _no_publish_hung(flow.plain)
    # the publisher rode out both faults: nothing was refused within publish_timeout_s
    assert flow.plain.errors() == []
    # the workers followed both new primaries: what was published to the third one arrived
    after = flow.plain.acked(flow.recovered)
    assert len(after) >= 50 and not (after & flow.missing), flow.logs
    # whatever was lost was acknowledged in a failover window, nowhere else
    lost = flow.lost(flow.plain)
    in_windows = set().union(*(flow.lost(flow.plain, f) for f in flow.faults))
    assert lost == in_windows, sorted(lost - in_windows)[:20]


def test_durable_publish_loses_nothing_acknowledged_through_both_faults(flow: Flow) -> None:
    _no_publish_hung(flow.durable)
    assert [f.name for f in flow.faults] == ["SENTINEL FAILOVER", "kill -9"]
    assert len(flow.durable.acked(flow.recovered)) >= 50  # durable again, replica back
    assert flow.lost(flow.durable) == set(), (sorted(flow.lost(flow.durable))[:20], flow.logs)


def test_a_publish_that_cannot_succeed_raises_in_time_and_never_hangs(
        sentinel_factory: Callable[[], SentinelSetup]) -> None:
    params = {"UCID": "u"}
    # a stopped primary (SIGSTOP: connections hang, no error): TimeoutError, then PublishError
    stopped = sentinel_factory()
    publisher = Publisher(stopped.url, key_prefix="rnfail:", publish_timeout_s=1.0)
    publisher.publish("RECORDING_STARTED_EVENT", route="r", params=params)
    stopped.node(stopped.primary_port()).signal(signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(PublishError) as caught:
        publisher.publish("RECORDING_STARTED_EVENT", route="r", params=params)
    assert time.monotonic() - started < 2.5
    assert "was NOT published" in str(caught.value) and "within 1 s" in str(caught.value)
    # every Redis server gone: the sentinels name a dead one; refused until the timeout
    gone = sentinel_factory()
    publisher = Publisher(gone.url, key_prefix="rnfail:", publish_timeout_s=1.0,
                          durable_replicas=1, durable_timeout_ms=200)
    for node in gone.servers:
        node.kill()
    started = time.monotonic()
    with pytest.raises(PublishError, match="was NOT published"):
        publisher.publish("RECORDING_STARTED_EVENT", route="r", params=params)
    assert 0.9 < time.monotonic() - started < 2.5


def test_kill_9_with_a_lagging_replica_loses_plain_acknowledged_events_not_durable_ones(
        sentinel_setup: SentinelSetup) -> None:
    # Given a replica that falls behind (SIGSTOP for 0.6 s while 8 KB events pour in:
    # far more than the kernel's socket buffers hold), plain and durable publishers at once
    setup = sentinel_setup
    prefix = "rnlag:"
    plain = FlowingPublisher(setup.url, prefix, rate_per_s=100_000, tag="p", pad=8000)
    durable = FlowingPublisher(setup.url, prefix, rate_per_s=100_000, tag="d", pad=8000,
                               durable_replicas=1, durable_timeout_ms=200)
    primary = setup.primary_port()
    replica = next(n for n in setup.servers if n.port != primary)
    try:
        plain.start()
        durable.start()
        time.sleep(0.3)
        ready = time.monotonic() + 15  # a loaded machine: let the durable one get going
        while len(durable.acked()) < 10:
            assert time.monotonic() < ready, "the durable publisher had no 10 acknowledgements"
            time.sleep(0.05)
        replica.signal(signal.SIGSTOP)
        stopped = time.monotonic()
        time.sleep(0.6)
        # When the primary is killed and the replica, resumed, is promoted
        setup.node(primary).kill()
        replica.signal(signal.SIGCONT)
        new = setup.wait_new_primary(primary)
    finally:
        plain.stop()
        durable.stop()
    survivors = in_stream(setup.primary_client(), f"{prefix}events")
    assert new == replica.port
    lost_plain, lost_durable = plain.acked() - survivors, durable.acked() - survivors
    print(f"\n[lagging replica, kill -9] plain: acknowledged {len(plain.acked())}, lost "
          f"{len(lost_plain)}; durable: acknowledged {len(durable.acked())}, lost "
          f"{len(lost_durable)}, refused {len(durable.errors())}")
    # Then the plain publisher lost events it had acknowledged, one unbroken run of them:
    # the replica had a prefix of the old primary's writes (asynchronous replication; how
    # far it lagged when stopped varies with the machine's load, and a replica that
    # overflowed its output buffer had less), and what came after the failover went to
    # the new primary; the durable one lost none
    assert lost_plain
    lost_seqs = sorted(int(tag[1:]) for tag in lost_plain)
    assert lost_plain == {tag for tag in plain.acked()
                          if lost_seqs[0] <= int(tag[1:]) <= lost_seqs[-1]}, (
        "an acknowledged event inside the lost run survived")
    assert lost_seqs[-1] >= min(int(t[1:]) for t in plain.acked(since=stopped)), (
        "the losses stop before the replica was stopped")
    assert lost_durable == set()
    assert len(durable.acked()) >= 10
    _no_publish_hung(plain)
    _no_publish_hung(durable)


def test_a_publisher_follows_a_forced_failover_before_the_old_primary_is_demoted(
        sentinel_setup: SentinelSetup) -> None:
    setup = sentinel_setup
    publisher = Publisher(setup.url, key_prefix="rnwatch:")
    publisher.publish("RECORDING_STARTED_EVENT", route="r", params={"UCID": "before"})
    old, new = setup.failover()
    time.sleep(2.0)
    # the sentinels demote the old primary only on their 10 s INFO round: still writable
    old_client, new_client = redis.Redis(port=old), redis.Redis(port=new)
    assert old_client.info("replication")["role"] == "master"
    publisher.publish("RECORDING_STARTED_EVENT", route="r", params={"UCID": "after"})
    # the publisher asked the sentinels again (producer.master_watch): the new primary has it
    assert "after" in in_stream(new_client, "rnwatch:events")
    assert "after" not in in_stream(old_client, "rnwatch:events")
    publisher.close()
