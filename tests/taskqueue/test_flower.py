"""Flower on a real worker: basic auth, the running worker, delivered tasks whose
arguments are only ids (never a secret), dead letters as FAILURE with their reason and
retries as RETRY; and ``recnotify run``'s Flower gets its password through its
environment, never its command line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.helpers import ROOT, WorkerFactory, stop_process
from tests.receiver import Receiver
from workers.http.signing import generate_secret
from workers.ops.embedded import free_port

pytestmark = pytest.mark.slow

AUTH = ("flower-user", "flower-pass-0123")


class Flower:
    def __init__(self, factory: WorkerFactory) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = factory.tmp_path / "flower.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "--app", "workers.celery_app", "flower",
             f"--port={self.port}", "--address=127.0.0.1"],
            env=factory.env(FLOWER_BASIC_AUTH=":".join(AUTH)), stdout=self._log,
            stderr=subprocess.STDOUT, cwd=ROOT)

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


def test_a_dead_letter_is_a_failed_task_with_its_reason_and_a_retry_is_a_retry(
        workers: WorkerFactory, receiver: Receiver, flower: Flower) -> None:
    receiver.script("/gone", [404])
    receiver.script("/flaky", [503, 200])
    workers.configure(
        "destinations:\n"
        f"  - {{name: gone-hook, events: all, scope: global, url: '{receiver.url('/gone')}'}}\n"
        f"  - {{name: flaky-hook, events: all, scope: global, url: '{receiver.url('/flaky')}',"
        " retry: {max_attempts: 3, backoff_s: 0.05, backoff_max_s: 0.1}}\n")
    workers.start(node="flower-d")
    flower.wait_until("/api/workers?refresh=1", lambda data: bool(data))
    event_id = workers.publisher().publish("RECORDING_STARTED_EVENT", params={"UCID": "f-2"})

    def by_destination(data: dict[str, Any], dest: str) -> list[dict[str, Any]]:
        return [t for t in data.values() if t.get("name") == "recnotify.deliver"
                and t.get("args") == repr((event_id, dest))]

    tasks = flower.wait_until("/api/tasks", lambda data: any(
        t.get("state") == "FAILURE" for t in by_destination(data, "gone-hook")) and any(
        t.get("state") == "SUCCESS" for t in by_destination(data, "flaky-hook")))
    gone = by_destination(tasks, "gone-hook")
    assert [t["state"] for t in gone] == ["FAILURE"], gone
    info = flower.get(f"/api/task/info/{gone[0]['uuid']}", auth=AUTH).json()
    assert info["exception"].startswith("DeadLettered("), info
    assert "dead letter after 1 attempt(s): HTTP 404" in info["exception"], info
    assert receiver.url().rsplit("/", 1)[0] not in info["exception"], info  # no URL
    # the flaky one: its first attempt's task is a RETRY naming the attempt and failure
    # (Celery keeps one task id across self.retry), which then succeeded
    flaky = by_destination(tasks, "flaky-hook")
    assert len(flaky) == 1, flaky
    flaky_info = flower.get(f"/api/task/info/{flaky[0]['uuid']}", auth=AUTH).json()
    assert flaky_info["state"] == "SUCCESS" and flaky_info["retries"] == 1, flaky_info
    assert "attempt 1 failed: HTTP 503; next attempt in" in flaky_info["exception"], flaky_info
    # the dead letter is an expected failure (``throws``): Celery logs it at INFO, which
    # workers/config/logs.py keeps quiet; never an ERROR line with a traceback
    log = (workers.tmp_path / "worker-flower-d.log").read_text()
    assert "raised unexpected" not in log and "Traceback" not in log, log[-3000:]


def test_recnotify_run_gives_flower_its_password_in_the_environment_not_argv(
        tmp_path: Any, redis_url: str, key_prefix: str) -> None:
    venv_bin = os.path.dirname(sys.executable)
    port = free_port()
    password = "run-flower-pass-0123456789"
    env = {"HOME": str(tmp_path), "PATH": os.environ.get("PATH", ""),
           "RECNOTIFY_REDIS_URL": redis_url, "RECNOTIFY_KEY_PREFIX": key_prefix,
           "RECNOTIFY_ADMIN_ADDR": f"127.0.0.1:{free_port()}",
           "RECNOTIFY_FLOWER_AUTH": f"ops:{password}"}
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        service = subprocess.Popen([os.path.join(venv_bin, "recnotify"), "run", "--processes",
                                    "1", "--flower-port", str(port)], cwd=tmp_path, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        answer: requests.Response | None = None
        while time.monotonic() < deadline:
            assert service.poll() is None, log_path.read_text()
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/api/workers", timeout=10,
                                      auth=("ops", password))
                break
            except requests.ConnectionError:
                time.sleep(0.5)
        assert answer is not None and answer.status_code == 200, log_path.read_text()
        assert requests.get(f"http://127.0.0.1:{port}/api/workers",
                            timeout=10).status_code == 401
        assert requests.get(f"http://127.0.0.1:{port}/api/workers", timeout=10,
                            auth=("ops", "wrong")).status_code == 401
        children = _children_argv(service.pid)
        flowers = [argv for argv in children.values() if b"\0flower\0" in argv]
        assert len(flowers) == 1, children
        assert password.encode() not in flowers[0] and b"basic-auth" not in flowers[0], flowers
        assert all(password.encode() not in argv for argv in children.values()), children
    finally:
        if service.poll() is None:
            service.send_signal(signal.SIGTERM)
        stop_process(service)


def _children_argv(pid: int) -> dict[int, bytes]:
    """/proc/<child>/cmdline of each direct child of ``pid`` (what ``ps`` shows anyone)."""
    found: dict[int, bytes] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                ppid = int(stat.read().rsplit(b")", 1)[1].split()[1])
            if ppid == pid:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    found[int(entry)] = cmdline.read()
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_a_long_retry_says_it_continues_from_the_durable_schedule_as_a_new_task(
        workers: WorkerFactory, receiver: Receiver, flower: Flower) -> None:
    # the test workers' RECNOTIFY_MAX_COUNTDOWN_S is 2: a 3-6 s wait goes to the schedule
    receiver.script("/slow", [503, 200])
    workers.configure(
        "destinations:\n"
        f"  - {{name: slow-hook, events: all, scope: global, url: '{receiver.url('/slow')}',"
        " retry: {max_attempts: 3, backoff_s: 6, backoff_max_s: 6}}\n")
    workers.start(node="flower-l")
    flower.wait_until("/api/workers?refresh=1", lambda data: bool(data))
    event_id = workers.publisher().publish("RECORDING_STARTED_EVENT", params={"UCID": "f-3"})

    def mine(data: dict[str, Any]) -> list[dict[str, Any]]:
        return [t for t in data.values() if t.get("args") == repr((event_id, "slow-hook"))]

    tasks = flower.wait_until("/api/tasks", lambda data: len(mine(data)) == 2 and any(
        t.get("state") == "SUCCESS" for t in mine(data)), timeout_s=60)
    states = {t["state"] for t in mine(tasks)}
    assert states == {"RETRY", "SUCCESS"}, mine(tasks)
    first = next(t for t in mine(tasks) if t["state"] == "RETRY")
    info = flower.get(f"/api/task/info/{first['uuid']}", auth=AUTH).json()
    assert "attempt 1 failed: HTTP 503; the next attempt comes from the durable schedule " \
        "as a new task id" in info["exception"], info
    assert len(receiver.received(lambda r: r.path == "/slow")) == 2


def test_a_bare_celery_worker_is_refused_pointing_at_recnotify_worker(
        workers: WorkerFactory) -> None:
    """`celery -A workers.celery_app worker` would never consume the event stream."""
    import subprocess
    import sys

    from tests.helpers import ROOT

    done = subprocess.run([sys.executable, "-m", "celery", "-A", "workers.celery_app",
                           "worker", "--pool=solo"], env=workers.env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert ("never consume the event stream (no recnotify consumer or scheduler): run "
            "`recnotify worker` instead") in done.stderr, done.stderr[-2000:]


def test_importing_the_app_module_builds_no_celery_app() -> None:
    import subprocess
    import sys

    from tests.helpers import ROOT

    code = ("import celery, workers.taskqueue.app, workers.taskqueue.tasks, "
            "workers.taskqueue.service; "
            "print(celery.current_app.main)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "default", done.stderr[-2000:]
