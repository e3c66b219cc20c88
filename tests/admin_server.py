"""A real `recnotify admin` process for tests (API, page, metrics)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

from tests.helpers import ROOT, WorkerFactory, stop_process
from workers.ops.embedded import free_port

TOKEN = "admin-token-for-tests-0123456789"


class AdminServer:
    """`python -m workers admin` on a free loopback port, with the factory's settings."""

    def __init__(self, factory: WorkerFactory, token: str | None = TOKEN, *,
                 env: dict[str, str | None] | None = None, healthy: bool = True) -> None:
        """``env`` sets (or, with None, removes) variables; ``healthy=False`` waits for any
        answer of /healthz instead of a 200 (a service whose database is broken on purpose)."""
        factory.store  # noqa: B018 - the schema exists before the service starts
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = token
        environ = factory.env(RECNOTIFY_ADMIN_ADDR=f"127.0.0.1:{self.port}")
        environ.pop("RECNOTIFY_ADMIN_TOKEN", None)
        if token:
            environ["RECNOTIFY_ADMIN_TOKEN"] = token
        for name, value in (env or {}).items():
            if value is None:
                environ.pop(name, None)
            else:
                environ[name] = value
        self.log_path: Path = factory.tmp_path / "admin.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "workers", "admin"], env=environ,
                                     stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"admin exited with {self.proc.returncode}: {self.log()}")
            try:
                status = requests.get(self.url + "/healthz", timeout=5).status_code
                if status == 200 or not healthy:
                    return
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"admin did not answer in 60 s: {self.log()}")
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def call(self, method: str, path: str, *, auth: bool = True, **kwargs: Any
             ) -> requests.Response:
        headers = kwargs.pop("headers", {})
        if auth and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return requests.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()
