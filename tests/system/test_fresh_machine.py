"""The README's commands on a truly fresh machine: a network namespace with nothing
listening, a PATH with no redis-server (only the venv's bin), no RECNOTIFY_* variable,
a fresh HOME, and every command but `run` started from another directory: `run` keeps
its data in ./.recnotify where it started (SPEC 7), the others find it through the
per-user pointer it writes.

Needs root (unshare/nsenter), as on the development machines and in CI; elsewhere
these tests skip with the reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import stop_process

VENV_BIN = Path(sys.executable).parent
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
LISTEN_PORT = 9000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare")
                       or not shutil.which("nsenter") or not shutil.which("ip"),
                       reason="needs root with unshare, nsenter and ip (a fresh network "
                              "namespace)"),
]

DESTINATIONS = f"""destinations:
  - name: face
    preset: face
    scope: route:support-line
    url: http://127.0.0.1:{LISTEN_PORT}/Face/eventNotify
  - name: crm
    preset: json
    scope: account:acme
    url: http://127.0.0.1:{LISTEN_PORT}/hooks/recordings
    secret: {SECRET}
"""


class FreshMachine:
    """A network namespace (only loopback, up) and a clean environment to run commands in."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.home = tmp / "home"
        self.elsewhere = tmp / "elsewhere"
        self.home.mkdir()
        self.elsewhere.mkdir()
        self.holder = subprocess.Popen(
            ["unshare", "-n", "--", "sh", "-c", "ip link set lo up && exec sleep 600"])
        self.procs: list[subprocess.Popen[bytes]] = []
        deadline = time.monotonic() + 5
        while self._ns() == Path("/proc/self/ns/net").resolve() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # `ip link set lo up` done before sh execs sleep

    def _ns(self) -> Path:
        return Path(f"/proc/{self.holder.pid}/ns/net").resolve()

    def argv(self, *command: str) -> list[str]:
        # PATH holds the venv's bin only: no redis-server anywhere on it.
        return ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", "--", "env", "-i",
                f"HOME={self.home}", f"PATH={VENV_BIN}", str(VENV_BIN / "recnotify"), *command]

    def start(self, *command: str, log: str, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        handle = open(self.tmp / log, "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(self.argv(*command), cwd=cwd or self.tmp, stdout=handle,
                                stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def run(self, *command: str, input_text: str | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*command), cwd=cwd or self.elsewhere,
                              capture_output=True, text=True, timeout=60, input=input_text)

    def log(self, name: str) -> str:
        path = self.tmp / name
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for(self, name: str, text: str, timeout_s: float = 60) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.log(name):
                return self.log(name)
            time.sleep(0.2)
        raise AssertionError(f"{text!r} not in {name} after {timeout_s} s:\n{self.log(name)}")

    def close(self) -> None:
        for proc in self.procs:
            stop_process(proc, 30)
        stop_process(self.holder)

    @property
    def data_dir(self) -> Path:
        """The data dir of a `run` started in ``tmp``: its ./.recnotify (SPEC 7)."""
        return self.tmp / ".recnotify"

    @property
    def pointer(self) -> Path:
        return self.home / ".local" / "share" / "recnotify" / "run.json"


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[FreshMachine]:
    fresh = FreshMachine(tmp_path)
    try:
        yield fresh
    finally:
        fresh.close()


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_readme_commands_work_on_a_fresh_machine_from_another_directory(
        machine: FreshMachine) -> None:
    # Given `recnotify run` with nothing listening and no redis-server on PATH
    machine.start("run", log="run.log")
    run_log = machine.wait_for("run.log", "Data dir:")
    assert "started an embedded Redis server" in run_log and "127.0.0.1:6379" in run_log
    assert f"Data dir: {machine.data_dir}" in run_log
    assert (machine.data_dir / "recnotify.db").is_file() and machine.pointer.is_file()
    machine.start("listen", "--port", str(LISTEN_PORT), "--secret", SECRET, log="listen.log",
                  cwd=machine.elsewhere)
    machine.wait_for("listen.log", "listening on")
    # When the worked example's commands run in another directory, with no environment
    (machine.elsewhere / "destinations.yaml").write_text(DESTINATIONS)
    imported = machine.run("destinations", "import", "destinations.yaml")
    assert imported.returncode == 0, imported.stderr
    assert "2 created" in imported.stdout
    # Running workers apply a change within 2 seconds (README); a person typing the next
    # command takes longer than that, a test does not.
    time.sleep(2.5)
    published = machine.run("publish", "RECORDING_STARTED_EVENT", "--route", "support-line",
                            "--account", "acme", "--param", "UCID=13-23132@1.2.3.4",
                            "--param", "CALLEDAORS=sip:7654321@1.2.3.1:5060")
    assert published.returncode == 0, published.stderr
    event_id = published.stdout.strip()
    # Then the listener shows both notifications, the signed one verified
    try:
        machine.wait_for("listen.log", "GET /Face/eventNotify", 30)
        listened = machine.wait_for("listen.log", "POST /hooks/recordings", 30)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\ntrace: {machine.run('trace', event_id).stdout}") from None
    assert "calledAors = sip:7654321@1.2.3.1:5060" in listened
    assert "ucid = 13-23132@1.2.3.4" in listened
    assert "signature: verified" in listened and f'"id": "{event_id}"' in listened
    # And trace, check, the list and Publisher() reach the same service and database
    deadline = time.monotonic() + 20
    while "[delivered]" not in (traced := machine.run("trace", event_id)).stdout or \
            traced.stdout.count("[delivered]") < 2:
        assert time.monotonic() < deadline, traced.stdout + traced.stderr
        time.sleep(0.5)
    assert machine.run("check").stdout.strip() == "OK"
    assert "face" in machine.run("destinations", "list").stdout
    script = "from producer import Publisher; print(Publisher().redis_url)"
    found = subprocess.run(
        ["nsenter", f"--net=/proc/{machine.holder.pid}/ns/net", "--", "env", "-i",
         f"HOME={machine.home}", str(VENV_BIN / "python"), "-c", script],
        cwd=machine.elsewhere, capture_output=True, text=True, timeout=30)
    assert found.stdout.strip() == "redis://127.0.0.1:6379/0", found.stderr
    # And nothing was created in the directory the commands ran from
    assert sorted(p.name for p in machine.elsewhere.iterdir()) == ["destinations.yaml"]


def test_a_killed_run_takes_its_redis_and_workers_along_and_runs_once_per_data_dir(
        machine: FreshMachine) -> None:
    # Given a running `recnotify run` that has accepted an event
    first = machine.start("run", "--flower-port", "0", log="run1.log")
    machine.wait_for("run1.log", "Data dir:")
    event_id = machine.run("publish", "RECORDING_STARTED_EVENT").stdout.strip()
    assert event_id
    # When a second one starts on the same data dir (the same directory), it refuses
    second = machine.run("run", "--flower-port", "0", cwd=machine.tmp)
    assert second.returncode == 1
    assert second.stderr.strip().startswith("error: `recnotify run` is already running for "
                                            f"data dir {machine.data_dir}")
    assert "Traceback" not in second.stderr
    # When the first is killed (SIGKILL: no cleanup of its own)
    time.sleep(3)  # the workers and the embedded server are up
    children = _children(first.pid)
    assert len(children) >= 3, children  # the embedded server, >= 2 workers (admin)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    # Then its Redis server and workers do not outlive it
    deadline = time.monotonic() + 30
    while (alive := [p for p in children if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert alive == []
    # And a new run starts on the same AOF files, with the event still there
    machine.start("run", "--flower-port", "0", log="run2.log")
    machine.wait_for("run2.log", "Data dir:")
    traced = machine.run("trace", event_id)
    assert traced.returncode == 0, traced.stderr
    assert "RECORDING_STARTED_EVENT" in traced.stdout
