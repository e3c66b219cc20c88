"""Durable publish (XADD + WAIT): the pure checks, and real Redis with and without replicas."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from producer import (
    DurabilityError,
    InvalidPublishOption,
    Publisher,
    PublishError,
    RecnotifyError,
)
from producer.durable import MAX_DURABLE_TIMEOUT_MS, check_durable_options, durability_problem
from tests.helpers import ROOT, WorkerFactory
from tests.sentinel import SentinelSetup


@given(wanted=st.integers(0, 8), acknowledged=st.integers(0, 8),
       timeout_ms=st.integers(1, MAX_DURABLE_TIMEOUT_MS))
def test_a_problem_exactly_when_too_few_replicas_acknowledged(
        wanted: int, acknowledged: int, timeout_ms: int) -> None:
    problem = durability_problem("ev-1", "1-0", wanted, acknowledged, timeout_ms)
    assert (problem is None) == (acknowledged >= wanted)
    if problem:
        assert "ev-1" in problem and "1-0" in problem and f"{timeout_ms} ms" in problem
        assert f"{acknowledged} of {wanted}" in problem
        assert "may also still be delivered" in problem and "twice" in problem


@pytest.mark.parametrize(("replicas", "timeout_ms", "publish_timeout_s"), [
    (-1, 100, 5.0), (1, 0, 5.0), (1, MAX_DURABLE_TIMEOUT_MS + 1, 100.0), (1, 5000, 5.0),
    (True, 100, 5.0), (1, 1.5, 5.0),
])
def test_options_that_could_hang_or_make_no_sense_are_refused(
        replicas: int, timeout_ms: int, publish_timeout_s: float) -> None:
    with pytest.raises(InvalidPublishOption) as caught:
        check_durable_options(replicas, timeout_ms, publish_timeout_s)
    assert isinstance(caught.value, RecnotifyError)


def test_sensible_options_pass() -> None:
    check_durable_options(0, 1000, 5.0)
    check_durable_options(2, 4999, 5.0)


def test_without_replicas_a_durable_publish_raises_and_says_the_event_may_be_there(
        redis_url: str, key_prefix: str, redis_client: redis.Redis) -> None:
    # Given a Redis with no replica (the test Redis)
    publisher = Publisher(redis_url, key_prefix=key_prefix, durable_replicas=1,
                          durable_timeout_ms=100)
    # When an event is published durably
    with pytest.raises(DurabilityError) as caught:
        publisher.publish("RECORDING_STARTED_EVENT", route="r", params={"UCID": "u"})
    # Then the error names it, and the event is in the stream all the same
    error = caught.value
    assert (error.wanted, error.acknowledged) == (1, 0)
    assert f"event {error.event_id}" in str(error) and "0 of 1 replica(s)" in str(error)
    ((entry_id, fields),) = redis_client.xrange(f"{key_prefix}events")
    assert entry_id.decode() == error.entry_id
    assert json.loads(fields[b"event"])["id"] == error.event_id


def test_with_a_replica_a_durable_publish_returns_once_the_replica_has_it(
        sentinel_setup: SentinelSetup) -> None:
    publisher = Publisher(sentinel_setup.url, key_prefix="rndur:", durable_replicas=1)
    event_id = publisher.publish("RECORDING_STARTED_EVENT", route="r", params={"UCID": "u"})
    replica = next(n for n in sentinel_setup.servers if n.port != sentinel_setup.primary_port())
    entries = redis.Redis(port=replica.port).xrange("rndur:events")
    assert [json.loads(f[b"event"])["id"] for _, f in entries] == [event_id]


def _publish_cli(factory_env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "workers", "publish", "RECORDING_STARTED_EVENT",
                           "--route", "r", "--param", "UCID=u", *extra], env=factory_env,
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


def test_publish_command_durable_flag_and_variable(workers: WorkerFactory,
                                                   sentinel_setup: SentinelSetup) -> None:
    # without a replica: one line, exit 1, saying the event may be there
    refused = _publish_cli(workers.env(), "--durable", "1", "--durable-timeout-ms", "100")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "0 of 1 replica(s) acknowledged" in refused.stderr
    by_env = _publish_cli(workers.env(RECNOTIFY_PUBLISH_DURABLE_REPLICAS="1",
                                      RECNOTIFY_PUBLISH_DURABLE_TIMEOUT_MS="100"))
    assert by_env.returncode == 1 and "0 of 1 replica(s)" in by_env.stderr
    # with one: the id is printed
    env = workers.env(RECNOTIFY_REDIS_URL=sentinel_setup.url)
    done = _publish_cli(env, "--durable", "1")
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip()) == 36
    two = _publish_cli(env, "--durable", "2", "--durable-timeout-ms", "100")
    assert two.returncode == 1 and "1 of 2 replica(s)" in two.stderr


def test_a_primary_refusing_writes_without_replicas_is_a_clear_publish_error(
        sentinel_setup: SentinelSetup) -> None:
    # Given the primary set up as docs/capacity.md advises (min-replicas-to-write 1) and
    # its only replica stopped: it answers NOREPLICAS (a redis ResponseError) to a write
    primary = sentinel_setup.primary_client()
    primary.config_set("min-replicas-max-lag", 1)
    primary.config_set("min-replicas-to-write", 1)
    replica = next(n for n in sentinel_setup.servers if n.port != sentinel_setup.primary_port())
    publisher = Publisher(sentinel_setup.url, key_prefix="rnnorep:", publish_timeout_s=1.0)
    replica.signal(signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 10
        while primary.info("replication").get("min_slaves_good_slaves", 1) != 0:
            assert time.monotonic() < deadline, "the primary never noticed the lagging replica"
            time.sleep(0.1)
        # Then a publish is retried until publish_timeout_s, then PublishError: NOT published
        started = time.monotonic()
        with pytest.raises(PublishError) as caught:
            publisher.publish("RECORDING_STARTED_EVENT", route="r", params={"UCID": "u"})
        assert 0.9 < time.monotonic() - started < 2.5
        assert "was NOT published" in str(caught.value) and "NOREPLICAS" in str(caught.value)
    finally:
        replica.signal(signal.SIGCONT)
    # and once the replica is back, the same publisher goes on
    deadline = time.monotonic() + 10
    while True:
        try:
            publisher.publish("RECORDING_STARTED_EVENT", route="r", params={"UCID": "u"})
            break
        except PublishError:
            assert time.monotonic() < deadline
