"""Test helpers: worker processes and the settings/store they share with the test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import redis

from producer import Publisher
from producer.redis_url import client_from_url
from workers.config.settings import Settings
from workers.destinations import load_file
from workers.store.database import Store

ROOT = Path(__file__).resolve().parent.parent
TEST_SECRET_KEY = "test-secret-key-0123456789"


def fast_retry(**overrides: Any) -> dict[str, Any]:
    return {"max_attempts": 3, "backoff_s": 0.05, "backoff_max_s": 0.1, **overrides}


@dataclass
class WorkerFactory:
    redis_url: str
    key_prefix: str
    tmp_path: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    database_url: str | None = None

    def __post_init__(self) -> None:
        self.settings = Settings.from_env(
            {},
            redis_url=self.redis_url,
            key_prefix=self.key_prefix,
            data_dir=self.tmp_path / "data",
            secret_key=TEST_SECRET_KEY,
        )
        self._store: Store | None = None

    # -- configuration -------------------------------------------------------------------
    def use_database(self, url: str) -> None:
        self.database_url = url
        self.settings = replace(self.settings, database_url=url)
        self._store = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
            self._store = Store(self.settings.effective_database_url, TEST_SECRET_KEY)
            self._store.upgrade()
        return self._store

    def configure(self, yaml_text: str, *, replace_all: bool = False) -> None:
        existing = {d.name: d for d in self.store.list_destinations()}
        self.store.import_destinations(load_file(yaml_text, existing=existing), replace=replace_all)

    def publisher(self) -> Publisher:
        return Publisher(self.redis_url, key_prefix=self.key_prefix)

    @property
    def redis(self) -> redis.Redis:
        return client_from_url(self.redis_url)

    # -- processes -----------------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECNOTIFY_")}
        env.update(self.settings.to_env())
        env.update(
            {
                "RECNOTIFY_CLAIM_IDLE_S": "5",
                "RECNOTIFY_WATCHDOG_S": "20",
                "RECNOTIFY_MAX_COUNTDOWN_S": "2",
                "PYTHONPATH": str(ROOT),
            }
        )
        env.update(self.extra_env)
        env.update(extra)
        return env

    def start(
        self, *, concurrency: int = 16, node: str | None = None, wait: bool = True, **extra_env: str
    ) -> subprocess.Popen[bytes]:
        self.store  # noqa: B018 - schema before the worker starts
        name = node or f"w{len(self.procs)}"
        log_path = self.tmp_path / f"worker-{name}.log"
        handle = open(log_path, "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "workers",
                "worker",
                "--processes",
                "1",
                "-c",
                str(concurrency),
                "--node-name",
                f"{os.uname().nodename}-{name}",
            ],
            env=self.env(**extra_env),
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        proc.log_path = log_path  # type: ignore[attr-defined]
        self.procs.append(proc)
        if wait:
            self.wait_ready(proc, f"{os.uname().nodename}-{name}")
        return proc

    def wait_ready(self, proc: subprocess.Popen[bytes], node: str, timeout_s: float = 30) -> None:
        key = self.settings.keys.heartbeat(node)
        client = self.redis
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"worker exited with {proc.returncode}:\n{self.log(proc)}")
            if client.exists(key):
                return
            time.sleep(0.1)
        raise AssertionError(f"worker {node} not ready in {timeout_s} s:\n{self.log(proc)}")

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        path: Path = proc.log_path  # type: ignore[attr-defined]
        return path.read_text(errors="replace")[-5000:]

    def all_logs(self) -> str:
        return "\n".join(self.log(p) for p in self.procs)

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def wait_dead_letters(self, count: int, timeout_s: float = 20) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            letters = self.store.list_dead_letters()
            if len(letters) >= count or time.monotonic() > deadline:
                return letters
            time.sleep(0.1)


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 20) -> None:
    """SIGTERM, wait, then SIGKILL: every service a test starts is stopped this way."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
