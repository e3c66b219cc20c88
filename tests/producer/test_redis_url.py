"""One RECNOTIFY_REDIS_URL for the stream and Celery: redis://, unix:// and sentinel://.

Sentinel is shown against real processes: a master, a replica and a sentinel
(redis-server --sentinel), started on free loopback ports for this module.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from producer import Publisher
from producer.errors import RecnotifyError
from producer.redis_url import (
    InvalidRedisUrl,
    client_from_url,
    kombu_broker,
    parse_sentinel_url,
    redact,
)
from workers.config.settings import Settings
from workers.ops.embedded import find_redis_server, free_port
from workers.taskqueue.app import create_app
from workers.taskqueue.enqueue import DELIVER_TASK

MASTER = "rnmaster"


def _wait(predicate: object, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():  # type: ignore[operator]
                return
        except (redis.exceptions.RedisError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached in {timeout_s} s")


@dataclass
class RedisProcs:
    """redis-server processes of one test setup, all stopped at the end."""

    root: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, name: str, *args: str) -> None:
        work = self.root / name
        work.mkdir()
        log = open(work / "log", "wb")  # noqa: SIM115 - closed with the process
        self.procs.append(subprocess.Popen([find_redis_server(), *args], cwd=work, stdout=log,
                                           stderr=subprocess.STDOUT))

    def server(self, name: str, port: int, *extra: str) -> None:
        self.start(name, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                   "--appendonly", "no", *extra)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@dataclass
class SentinelSetup:
    master_port: int
    replica_port: int
    sentinel_port: int

    @property
    def url(self) -> str:
        return f"sentinel://127.0.0.1:{self.sentinel_port}/0?master_name={MASTER}"

    def sentinel(self) -> redis.Redis:
        return redis.Redis(port=self.sentinel_port)

    def master_port_now(self) -> int:
        _host, port = self.sentinel().sentinel_get_master_addr_by_name(MASTER)
        return int(port)


@pytest.fixture(scope="module")
def sentinel_setup() -> Iterator[SentinelSetup]:
    root = Path(tempfile.mkdtemp(prefix="recnotify-sentinel-"))
    procs = RedisProcs(root)
    setup = SentinelSetup(free_port(), free_port(), free_port())
    try:
        procs.server("master", setup.master_port)
        procs.server("replica", setup.replica_port, "--replicaof", "127.0.0.1",
                     str(setup.master_port))
        conf = root / "sentinel.conf"
        conf.write_text(
            f"bind 127.0.0.1\nport {setup.sentinel_port}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {setup.master_port} 1\n"
            f"sentinel down-after-milliseconds {MASTER} 2000\n"
            f"sentinel failover-timeout {MASTER} 10000\n")
        procs.start("sentinel", str(conf), "--sentinel")
        replica = redis.Redis(port=setup.replica_port)
        _wait(lambda: replica.info("replication")["master_link_status"] == "up",
              "replica in sync")
        _wait(lambda: setup.sentinel().sentinel_slaves(MASTER), "sentinel sees the replica")
        yield setup
    finally:
        procs.stop()
        shutil.rmtree(root, ignore_errors=True)


# -- parsing ---------------------------------------------------------------------------------
def test_sentinel_url_lists_every_sentinel_with_db_password_and_master() -> None:
    parsed = parse_sentinel_url(
        "sentinel://:s3cret@10.0.0.1:26379;sentinel://10.0.0.2;sentinel://10.0.0.3:26380/2"
        "?master_name=prod")
    assert parsed.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("10.0.0.3", 26380))
    assert (parsed.master_name, parsed.db, parsed.password) == ("prod", 2, "s3cret")
    assert "s3cret" not in repr(parsed)


def test_kombu_broker_url_carries_credentials_on_every_sentinel_and_master_name_apart() -> None:
    url, options = kombu_broker("sentinel://:pw@a:1;sentinel://b:2/3?master_name=m")
    assert url == "sentinel://:pw@a:1/3;sentinel://:pw@b:2/3"
    assert options == {"master_name": "m"}
    assert kombu_broker("redis://h:6379/1") == ("redis://h:6379/1", {})


def test_sentinel_url_without_master_name_is_refused_naming_the_url() -> None:
    with pytest.raises(InvalidRedisUrl, match=r"sentinel://:\*\*\*@h:1/0.*master_name") as info:
        client_from_url("sentinel://:hunter2@h:1/0")
    assert "hunter2" not in str(info.value)
    assert isinstance(info.value, RecnotifyError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize("url", ["redis+cluster://h:7000", "http://h:6379", "h:6379"])
def test_unsupported_scheme_is_refused_and_names_the_url(url: str) -> None:
    with pytest.raises(InvalidRedisUrl, match="unsupported scheme") as info:
        client_from_url(url)
    assert url in str(info.value)


def test_mixed_sentinel_and_redis_addresses_are_refused() -> None:
    with pytest.raises(InvalidRedisUrl, match=r"redis://b:2.*not a sentinel"):
        parse_sentinel_url("sentinel://a:1;redis://b:2/0?master_name=m")


def test_redact_masks_every_password() -> None:
    assert redact("sentinel://:p1@a:1;sentinel://u:p2@b:2/0") == \
        "sentinel://:***@a:1;sentinel://u:***@b:2/0"
    assert redact("redis://h:6379/0") == "redis://h:6379/0"


# -- real servers ----------------------------------------------------------------------------
def test_redis_url_client_reaches_the_server(redis_url: str, key_prefix: str) -> None:
    client = client_from_url(redis_url, socket_timeout=5)
    client.set(key_prefix + "k", "v")
    assert redis.Redis.from_url(redis_url).get(key_prefix + "k") == b"v"


def test_unix_socket_url_reaches_the_server(tmp_path: Path) -> None:
    procs = RedisProcs(tmp_path)
    sock = tmp_path / "redis.sock"
    procs.start("unix", "--port", "0", "--unixsocket", str(sock), "--save", "",
                "--appendonly", "no")
    try:
        _wait(sock.exists, "unix socket")
        client = client_from_url(f"unix://{sock}?db=2")
        client.set("k", "over-unix")
        assert redis.Redis(unix_socket_path=str(sock), db=2).get("k") == b"over-unix"
    finally:
        procs.stop()


def test_publisher_writes_to_the_master_named_by_the_sentinel(
        sentinel_setup: SentinelSetup) -> None:
    prefix = f"rntest-{uuid.uuid4().hex[:8]}:"
    publisher = Publisher(sentinel_setup.url, key_prefix=prefix)
    event_id = publisher.publish("RECORDING_STARTED_EVENT", params={"UCID": "1@2"})
    master = redis.Redis(port=sentinel_setup.master_port_now())
    entries = master.xrange(prefix + "events")
    assert [json.loads(fields[b"event"])["id"] for _id, fields in entries] == [event_id]
    publisher.close()


def test_dead_first_sentinel_is_skipped(sentinel_setup: SentinelSetup) -> None:
    url = (f"sentinel://127.0.0.1:{free_port()};sentinel://127.0.0.1:"
           f"{sentinel_setup.sentinel_port}/0?master_name={MASTER}")
    client = client_from_url(url, socket_timeout=5, socket_connect_timeout=2)
    assert client.ping() is True


def test_celery_broker_on_sentinel_url_enqueues_on_the_master(
        sentinel_setup: SentinelSetup) -> None:
    prefix = f"rntest-{uuid.uuid4().hex[:8]}:"
    settings = Settings.from_env({}, redis_url=sentinel_setup.url, key_prefix=prefix)
    app = create_app(settings)
    assert app.conf.broker_transport_options["master_name"] == MASTER
    app.send_task(DELIVER_TASK, args=("event-1", "dest-a"), queue="deliver")
    master = redis.Redis(port=sentinel_setup.master_port_now())
    raw = master.lrange(settings.keys.deliver_queue, 0, -1)
    assert len(raw) == 1
    message = json.loads(raw[0])
    assert message["headers"]["task"] == DELIVER_TASK
    assert message["headers"]["argsrepr"] == "('event-1', 'dest-a')"
    app.close()


def test_publisher_follows_a_sentinel_failover(sentinel_setup: SentinelSetup) -> None:
    """Runs last in this module: it swaps master and replica."""
    prefix = f"rntest-{uuid.uuid4().hex[:8]}:"
    publisher = Publisher(sentinel_setup.url, key_prefix=prefix, publish_timeout_s=20)
    before = publisher.publish("RECORDING_STARTED_EVENT")
    old_port = sentinel_setup.master_port_now()
    sentinel_setup.sentinel().execute_command("SENTINEL", "FAILOVER", MASTER)
    _wait(lambda: sentinel_setup.master_port_now() != old_port, "failover")
    new_master = redis.Redis(port=sentinel_setup.master_port_now())
    _wait(lambda: new_master.info("replication")["role"] == "master", "new master")
    # Replication is asynchronous: until the sentinel has turned the old master into a
    # replica it still accepts writes (lost afterwards); see docs/capacity.md.
    old_master = redis.Redis(port=old_port)
    _wait(lambda: old_master.info("replication")["role"] == "slave", "old master demoted")
    after = publisher.publish("RECORDING_ENDED_EVENT")
    ids = [json.loads(f[b"event"])["id"] for _i, f in new_master.xrange(prefix + "events")]
    assert ids == [before, after]
    publisher.close()
