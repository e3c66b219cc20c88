"""A real Redis Sentinel setup for tests: a primary, one replica and three sentinels.

Every process is a real ``redis-server`` / ``redis-sentinel`` on a free loopback port
with its own temporary directory, started by the test and always stopped (SIGKILL
at the end, whatever happened). The sentinels use quorum 2 and short timeouts
(``down-after-milliseconds`` 1000, ``failover-timeout`` 3000) so a failover takes a
few seconds. If the binaries are missing the fixture FAILS, saying what to install.

>>> setup = SentinelSetup(tmp_path).start()
>>> setup.url   # sentinel://127.0.0.1:P1;sentinel://127.0.0.1:P2;...;/0?master_name=...
>>> setup.failover()            # SENTINEL FAILOVER, waits for the new primary
>>> setup.kill_primary()        # kill -9 of the primary, waits for the new primary
"""

from __future__ import annotations

import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from workers.ops.embedded import free_port

MASTER_NAME = "rnmaster"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000
INSTALL_HINT = "apt-get install redis-sentinel redis-server"


def _binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists()
                                  else None)
    if path is None:
        pytest.fail(f"{name} is not installed: the Sentinel tests need real sentinels "
                    f"({INSTALL_HINT})", pytrace=False)
    return path


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=1)


@dataclass
class Node:
    """One server process: its port, its directory and the process."""

    port: int
    directory: Path
    args: list[str]
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Node:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = open(self.directory / "log", "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                     cwd=self.directory)
        log.close()
        deadline = time.monotonic() + 10
        while True:
            try:
                if _client(self.port).ping():
                    return self
            except redis.RedisError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{self.args[0]} on port {self.port} did not start: "
                                     f"{self.log()}")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def signal(self, number: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(number)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        path = self.directory / "log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""


@dataclass
class SentinelSetup:
    """Primary + replica + three sentinels under ``root``; see the module docstring."""

    root: Path
    master_name: str = MASTER_NAME
    servers: list[Node] = field(default_factory=list)
    sentinels: list[Node] = field(default_factory=list)

    def start(self) -> SentinelSetup:
        server, sentinel = _binary("redis-server"), _binary("redis-sentinel")
        try:
            primary_port = free_port()
            for index in range(2):
                port = primary_port if index == 0 else free_port()
                directory = self.root / f"redis-{port}"
                args = [server, "--port", str(port), "--bind", "127.0.0.1", "--dir",
                        str(directory), "--save", "", "--appendonly", "no",
                        "--protected-mode", "no", "--repl-diskless-sync-delay", "0"]
                if index:
                    args += ["--replicaof", "127.0.0.1", str(primary_port)]
                self.servers.append(Node(port, directory, args).start())
            self.wait_replicated(primary_port, 1)
            # known ids and peers in each config: no waiting for the hello messages
            peers = [(free_port(), secrets.token_hex(20)) for _ in range(3)]
            name = self.master_name
            for port, myid in peers:
                directory = self.root / f"sentinel-{port}"
                directory.mkdir(parents=True)
                config = directory / "sentinel.conf"
                config.write_text("\n".join([
                    f"port {port}", "bind 127.0.0.1", "protected-mode no",
                    f"dir {directory}", f"sentinel myid {myid}",
                    f"sentinel monitor {name} 127.0.0.1 {primary_port} 2",
                    f"sentinel down-after-milliseconds {name} {DOWN_AFTER_MS}",
                    f"sentinel failover-timeout {name} {FAILOVER_TIMEOUT_MS}",
                    f"sentinel parallel-syncs {name} 1",
                    f"sentinel known-replica {name} 127.0.0.1 {self.servers[1].port}",
                    *(f"sentinel known-sentinel {name} 127.0.0.1 {p} {i}"
                      for p, i in peers if p != port), "",
                ]))
                self.sentinels.append(Node(port, directory, [sentinel, str(config)]).start())
            self.wait_sentinels_agree(primary_port)
        except BaseException:
            self.stop()
            raise
        return self

    # -- addresses -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The ``sentinel://`` URL the README documents, one address per sentinel."""
        hosts = ";".join(f"sentinel://127.0.0.1:{s.port}" for s in self.sentinels)
        return f"{hosts}/0?master_name={self.master_name}"

    def primary_port(self) -> int:
        """The port the sentinels currently name as the primary."""
        for node in self.sentinels:
            if not node.alive():
                continue
            try:
                reply = _client(node.port).sentinel_get_master_addr_by_name(self.master_name)
            except redis.RedisError:
                continue
            if reply:
                return int(reply[1])
        raise AssertionError("no sentinel answers for the primary")

    def node(self, port: int) -> Node:
        return next(n for n in self.servers if n.port == port)

    def primary_client(self) -> redis.Redis:
        return _client(self.primary_port())

    # -- waiting -------------------------------------------------------------------------
    def wait_replicated(self, primary_port: int, replicas: int, timeout_s: float = 15) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                info = _client(primary_port).info("replication")
                online = [v for k, v in info.items() if k.startswith("slave")
                          and isinstance(v, dict) and v.get("state") == "online"]
                if info.get("role") == "master" and len(online) >= replicas:
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"port {primary_port}: {replicas} replica(s) not online "
                                     f"in {timeout_s} s")
            time.sleep(0.05)

    def wait_sentinels_agree(self, primary_port: int, timeout_s: float = 20) -> None:
        """Every live sentinel names ``primary_port``, knows the replica and its peers."""
        deadline = time.monotonic() + timeout_s
        live = [s for s in self.sentinels if s.alive()]
        while True:
            ready = 0
            for node in live:
                try:
                    client = _client(node.port)
                    addr = client.sentinel_get_master_addr_by_name(self.master_name)
                    master = client.sentinel_master(self.master_name)
                    if (addr and int(addr[1]) == primary_port
                            and int(master.get("num-other-sentinels", 0)) >= len(live) - 1):
                        ready += 1
                except redis.RedisError:
                    pass
            if ready == len(live):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"sentinels do not agree on port {primary_port} in "
                                     f"{timeout_s} s")
            time.sleep(0.1)

    def wait_new_primary(self, old_port: int, timeout_s: float = 30) -> int:
        """The new primary's port once the sentinels name another one and it is writable."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                port = self.primary_port()
                if port != old_port and _client(port).info("replication")["role"] == "master":
                    return port
            except (redis.RedisError, AssertionError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"no new primary in {timeout_s} s")
            time.sleep(0.05)

    # -- faults --------------------------------------------------------------------------
    def failover(self) -> tuple[int, int]:
        """``SENTINEL FAILOVER``: (old port, new port) once the replica is primary."""
        old = self.primary_port()
        _client(self.sentinels[0].port).sentinel_failover(self.master_name)
        return old, self.wait_new_primary(old)

    def kill_primary(self) -> tuple[int, int]:
        """``kill -9`` of the primary: (old port, new port) once the sentinels promoted."""
        old = self.primary_port()
        self.node(old).kill()
        return old, self.wait_new_primary(old)

    def restart_as_replica(self, port: int, timeout_s: float = 20) -> None:
        """Start a killed server again as a replica of the current primary (what its
        init script does after a failover; the sentinels alone take up to 10 s), and wait
        until the primary has it online."""
        node = self.node(port)
        primary = self.primary_port()
        args = list(node.args)
        if "--replicaof" in args:
            del args[args.index("--replicaof"):args.index("--replicaof") + 3]
        node.args = [*args, "--replicaof", "127.0.0.1", str(primary)]
        node.start()
        self.wait_replicated(primary, 1, timeout_s)

    def stop(self) -> None:
        for node in (*self.sentinels, *self.servers):
            node.kill()


@pytest.fixture
def sentinel_factory(tmp_path: Path) -> Iterator[Callable[[], SentinelSetup]]:
    """Start Sentinel setups on demand; every process of every one is killed at the end."""
    started: list[SentinelSetup] = []

    def start() -> SentinelSetup:
        setup = SentinelSetup(tmp_path / f"sentinel-{len(started)}")
        started.append(setup)
        return setup.start()

    try:
        yield start
    finally:
        for setup in started:
            setup.stop()


@pytest.fixture
def sentinel_setup(sentinel_factory: Callable[[], SentinelSetup]) -> SentinelSetup:
    """One started primary + replica + 3 sentinels (stopped by ``sentinel_factory``)."""
    return sentinel_factory()
