"""Flower on a real worker: basic auth, the running worker, and delivered tasks whose
arguments are only ids (never a secret)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.helpers import ROOT, WorkerFactory, stop_process
from tests.receiver import Receiver
from workers.embedded import free_port
from workers.signing import generate_secret

pytestmark = pytest.mark.slow

AUTH = ("flower-user", "flower-pass-0123")


class Flower:
    def __init__(self, factory: WorkerFactory) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = factory.tmp_path / "flower.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "--app", "workers.app", "flower",
             f"--port={self.port}", "--address=127.0.0.1", f"--basic-auth={':'.join(AUTH)}"],
            env=factory.env(), stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=30, **kwargs)

    def wait_until(self, path: str, ok: Any, timeout_s: float = 90) -> Any:
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"flower exited: {self.log_path.read_text()[-3000:]}")
            try:
                answer = self.get(path, auth=AUTH)
                if answer.status_code == 200:
                    last = answer.json()
                    if ok(last):
                        return last
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"flower {path} never satisfied the check; last: {last!r}\n"
                             f"{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        stop_process(self.proc)
        self._log.close()


@pytest.fixture
def flower(workers: WorkerFactory) -> Iterator[Flower]:
    server = Flower(workers)
    try:
        yield server
    finally:
        server.stop()


def test_flower_shows_the_worker_and_a_delivered_task_with_ids_only(
        workers: WorkerFactory, receiver: Receiver, flower: Flower) -> None:
    secret = generate_secret()
    workers.configure("destinations:\n  - name: signed-hook\n    events: all\n"
                      f"    scope: global\n    url: {receiver.url('/signed')}\n"
                      f"    secret: {secret}\n"
                      "    headers: {X-Api-Key: {value: header-secret-value-42, secret: true}}\n")
    workers.start(node="flower-w")
    # Flower is up and protected: no credentials, no data
    workers_seen = flower.wait_until("/api/workers?refresh=1", lambda data: bool(data))
    assert any("flower-w" in name for name in workers_seen), workers_seen
    assert flower.get("/api/workers").status_code == 401
    assert flower.get("/api/tasks").status_code == 401
    # One delivered notification shows as a recnotify.deliver task with ids as arguments
    event_id = workers.publisher().publish("RECORDING_STARTED_EVENT", params={"UCID": "f-1"})
    receiver.wait_for(1)
    tasks = flower.wait_until("/api/tasks", lambda data: any(
        t.get("name") == "recnotify.deliver" and t.get("state") == "SUCCESS"
        for t in data.values()))
    deliver = [t for t in tasks.values() if t.get("name") == "recnotify.deliver"]
    assert len(deliver) == 1
    assert deliver[0]["args"] == repr((event_id, "signed-hook")), deliver[0]["args"]
    everything = flower.get("/api/tasks", auth=AUTH).text + flower.get(
        f"/api/task/info/{deliver[0]['uuid']}", auth=AUTH).text
    assert secret not in everything and secret.removeprefix("whsec_") not in everything
    assert "header-secret-value-42" not in everything
