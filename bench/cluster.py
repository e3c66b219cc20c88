"""The processes a benchmark run starts (receiver, naive workers, recnotify workers), the
receiver's control client and peak-RSS readings. Everything started here is stopped by
:meth:`Cluster.close`, and every Redis key it used (under its own prefixes) is deleted,
with its temporary directory (worker logs, SQLite) unless ``BENCH_KEEP_FILES`` is set."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.helpers import WorkerFactory
from workers.config.env import DEFAULT_CLAIM_IDLE_S, DEFAULT_MAX_COUNTDOWN_S, DEFAULT_WATCHDOG_S
from workers.http.signing import generate_secret

#: The product's default timings, for a WorkerFactory (whose own are the tests' short ones:
#: tests/helpers.py), so a benchmark measures what the default command does.
DEFAULT_TIMINGS = {"RECNOTIFY_CLAIM_IDLE_S": str(DEFAULT_CLAIM_IDLE_S),
                   "RECNOTIFY_WATCHDOG_S": str(DEFAULT_WATCHDOG_S),
                   "RECNOTIFY_MAX_COUNTDOWN_S": str(DEFAULT_MAX_COUNTDOWN_S)}

ROOT = Path(__file__).resolve().parent.parent


def peak_rss_mb(pid: int) -> float:
    """The peak resident set size (VmHWM) of a live process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry.name))
    return found


class ReceiverClient:
    def __init__(self, port: int) -> None:
        self.port = port

    def url(self, kind: str, group: str) -> str:
        return f"http://127.0.0.1:{self.port}/{kind}/{group}"

    def _get(self, path: str) -> object:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as resp:
            return json.loads(resp.read())

    def count(self, group: str) -> int:
        count = self._get(f"/_count/{group}")
        assert isinstance(count, int)
        return count

    def marks(self, group: str) -> list[tuple[str, float]]:
        return [(m, float(t)) for m, t in self._get(f"/_marks/{group}")]  # type: ignore[attr-defined]

    def wait(self, group: str, count: int, timeout_s: float) -> list[tuple[str, float]]:
        """Wait for ``count`` requests on ``group``; their (marker, arrival) pairs."""
        deadline = time.monotonic() + timeout_s
        while self.count(group) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"receiver group {group}: {self.count(group)} of {count} "
                                   f"requests after {timeout_s:.0f} s")
            time.sleep(0.02)
        return self.marks(group)


@dataclass
class Cluster:
    redis_url: str
    tmp: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rnbench-")))
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    factories: list[WorkerFactory] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    secret: str = field(default_factory=generate_secret)

    def prefix(self, name: str) -> str:
        prefix = f"rnbench-{name}-{uuid.uuid4().hex[:8]}:"
        self.prefixes.append(prefix)
        return prefix

    def _spawn(self, args: list[str], log: str, env: dict[str, str] | None = None
               ) -> subprocess.Popen[bytes]:
        handle = open(self.tmp / log, "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE if log == "-" else handle,
                                stderr=handle, env=env)
        self.procs.append(proc)
        return proc

    def start_receiver(self, delay_ms: float = 100.0) -> ReceiverClient:
        proc = self._spawn([sys.executable, "-m", "bench.receiver", "--delay-ms",
                            str(delay_ms)], "-")
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("port "):
            raise RuntimeError(f"receiver did not start: {line!r}")
        return ReceiverClient(int(line.split()[1]))

    def start_naive(self, prefix: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "NAIVE_BROKER_URL": self.redis_url, "NAIVE_KEY_PREFIX": prefix,
               "PYTHONPATH": str(ROOT)}
        return self._spawn([sys.executable, "-m", "celery", "-A", "bench.naive", "worker",
                            "--loglevel", "WARNING"],
                           "naive.log", env)

    def recnotify(self, prefix: str, yaml_text: str) -> WorkerFactory:
        factory = WorkerFactory(redis_url=self.redis_url, key_prefix=prefix,
                                tmp_path=self.tmp / prefix.rstrip(":"),
                                extra_env=dict(DEFAULT_TIMINGS))
        factory.tmp_path.mkdir(parents=True, exist_ok=True)
        factory.configure(yaml_text)
        self.factories.append(factory)
        return factory

    def destination(self, name: str, scope: str, url: str) -> str:
        return (f"  - name: {name}\n    events: all\n    scope: '{scope}'\n    url: '{url}'\n"
                f"    params: 'm=%UCID%'\n    secret: '{self.secret}'\n")

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def close(self) -> None:
        for factory in self.factories:
            factory.stop_all()
        for proc in reversed(self.procs):
            self.stop(proc)
        client = redis.Redis.from_url(self.redis_url)
        for prefix in self.prefixes:
            keys = list(client.scan_iter(match=prefix + "*", count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start:start + 500])
        client.close()
        if not os.environ.get("BENCH_KEEP_FILES"):
            shutil.rmtree(self.tmp, ignore_errors=True)
