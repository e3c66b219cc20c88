"""Failover while notifications flow: real sentinels, a steady publisher, real workers.

Each test runs one flow of events (100/s through ``producer.Publisher`` on the
``sentinel://`` URL) into a real ``recnotify worker`` and a real receiver, fails the
primary once with ``SENTINEL FAILOVER`` and once with ``kill -9``, and counts what
was lost: events ``publish()`` acknowledged that never reached the receiver.

- Plain publish: Redis replicates asynchronously, so an event the old primary
  acknowledged in the failover window (after the sentinels promoted the replica and
  before the old primary learned it; or in the last moments before a ``kill -9``) can
  be lost. The test asserts every loss lies in that window (from 1 s before the fault
  to 1 s after the new primary answered) and prints the counts.
- Durable publish (``durable_replicas=1``): nothing acknowledged is lost, in both
  faults (the killed primary is started again as a replica, so the new one has one;
  until then durable publishes wait and retry).

Both check that no publish hung: each returned or raised within ``publish_timeout_s``
(plus the durable wait). ``RECNOTIFY_TEST_SENTINEL_SOAK_S=SECONDS`` (opt-in) lengthens
each steady phase (default 1.5 s) for a soak run.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from producer import Publisher, PublishError
from tests.failover import FlowingPublisher, destination_yaml, wait_delivered
from tests.helpers import WorkerFactory
from tests.receiver import Receiver
from tests.sentinel import SentinelSetup

pytestmark = pytest.mark.slow

STEADY_S = float(os.environ.get("RECNOTIFY_TEST_SENTINEL_SOAK_S") or 1.5)
PUBLISH_TIMEOUT_S = 5.0
#: Asynchronous replication: an acknowledged event can only be lost this close to a fault.
WINDOW_SLACK_S = 1.0


@dataclass
class Fault:
    name: str
    started: float
    switched: float  # the new primary answered as primary
    lost: set[str] = field(default_factory=set)


def run_flow(tmp_path: Path, setup: SentinelSetup, receiver: Receiver, *, durable: int
             ) -> tuple[FlowingPublisher, list[Fault], set[str], float, WorkerFactory]:
    factory = WorkerFactory(redis_url=setup.url, key_prefix=f"rnfo-{uuid.uuid4().hex[:8]}:",
                            tmp_path=tmp_path)
    factory.configure(destination_yaml(receiver))
    flow = FlowingPublisher(setup.url, factory.key_prefix, durable_replicas=durable,
                            publish_timeout_s=PUBLISH_TIMEOUT_S)
    faults: list[Fault] = []
    recovered = 0.0
    try:
        factory.start(concurrency=8)
        flow.start()
        time.sleep(STEADY_S)
        started = time.monotonic()
        setup.failover()
        faults.append(Fault("SENTINEL FAILOVER", started, time.monotonic()))
        time.sleep(STEADY_S)
        started = time.monotonic()
        old, _new = setup.kill_primary()
        faults.append(Fault("kill -9", started, time.monotonic()))
        setup.restart_as_replica(old)
        recovered = time.monotonic()
        time.sleep(STEADY_S)
        flow.stop()
        acked = flow.acked()
        missing = wait_delivered(receiver, acked, timeout_s=40, quiet_s=8)
    finally:
        flow.stop()
        factory.stop_all()
    for fault in faults:
        fault.lost = missing & flow.acked(fault.started - WINDOW_SLACK_S,
                                          fault.switched + WINDOW_SLACK_S)
    report = ", ".join(f"{f.name}: switched in {f.switched - f.started:.1f} s, lost "
                       f"{len(f.lost)}" for f in faults)
    print(f"\n[failover durable={durable}] published {len(flow.outcomes)}, acknowledged "
          f"{len(acked)}, lost {len(missing)} ({report}); publish errors "
          f"{len(flow.errors())}, durable retries "
          f"{sum(o.durable_retries for o in flow.outcomes)}, longest publish "
          f"{flow.max_latency_s():.2f} s")
    return flow, faults, missing, recovered, factory


def _no_publish_hung(flow: FlowingPublisher, durable_timeout_s: float) -> None:
    bound = PUBLISH_TIMEOUT_S + durable_timeout_s + 0.5
    slow = [o for o in flow.outcomes if o.finished - o.started > bound]
    assert not slow, f"{len(slow)} publish call(s) took longer than {bound} s"
    for outcome in flow.errors():
        assert outcome.error and ("NOT published" in outcome.error
                                  or "may also still be delivered" in outcome.error), outcome


def test_plain_publish_loses_only_events_acknowledged_in_the_failover_window(
        tmp_path: Path, sentinel_setup: SentinelSetup, receiver: Receiver) -> None:
    flow, faults, missing, recovered, factory = run_flow(tmp_path, sentinel_setup, receiver,
                                                         durable=0)
    _no_publish_hung(flow, 0.0)
    # the publishers rode out both faults: nothing was refused within publish_timeout_s
    assert flow.errors() == []
    # the workers followed both new primaries: events acknowledged after the last fault
    # (written to the third primary) arrived
    after = flow.acked(max(recovered, faults[-1].switched + WINDOW_SLACK_S))
    assert len(after) >= 50 and not (after & missing), factory.all_logs()
    # whatever was lost was acknowledged in a failover window, nowhere else
    in_windows = set().union(*(f.lost for f in faults))
    assert missing == in_windows, sorted(missing - in_windows, key=int)[:20]


def test_durable_publish_loses_nothing_acknowledged_through_both_faults(
        tmp_path: Path, sentinel_setup: SentinelSetup, receiver: Receiver) -> None:
    flow, faults, missing, recovered, factory = run_flow(tmp_path, sentinel_setup, receiver,
                                                         durable=1)
    _no_publish_hung(flow, flow.durable_timeout_ms / 1000)
    assert len(flow.acked(recovered)) >= 50  # durable again once the replica is back
    assert [f.name for f in faults] == ["SENTINEL FAILOVER", "kill -9"]
    assert missing == set(), (sorted(missing, key=int)[:20], factory.all_logs()[-3000:])


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
