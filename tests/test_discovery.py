"""Commands and Publisher() find the service without being told (SPEC 7), `recnotify
listen` shows real deliveries, and `recnotify worker` uses every CPU by default."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from producer import Publisher
from producer.discovery import RunInfo, read_run_file, write_run_file
from tests.helpers import ROOT, TEST_SECRET_KEY, WorkerFactory, stop_process
from workers.cli import main
from workers.embedded import free_port
from workers.service import available_cpus
from workers.settings import Settings
from workers.signing import generate_secret


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No RECNOTIFY_* variable, and a HOME of its own (so its own default data dir)."""
    for name in list(os.environ):
        if name.startswith("RECNOTIFY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home" / ".local" / "share" / "recnotify"


def test_the_default_data_dir_is_per_user_not_the_current_directory(clean_env: Path,
                                                                    tmp_path: Path) -> None:
    assert Settings.from_env().data_dir == clean_env
    os.chdir(tmp_path / "..")
    assert Settings.from_env().data_dir == clean_env


def test_publisher_and_commands_use_the_redis_of_a_live_run_file(
        clean_env: Path, redis_url: str, key_prefix: str) -> None:
    # Given a run file of a live process (this one) in the default data dir
    clean_env.mkdir(parents=True)
    database = f"sqlite:///{clean_env / 'elsewhere.db'}"
    write_run_file(clean_env, RunInfo(redis_url, key_prefix, database, os.getpid()))
    assert (clean_env / "run.json").stat().st_mode & 0o077 == 0
    # Then Publisher() and the settings of every command use what it names
    publisher = Publisher()
    assert (publisher.redis_url, publisher.key_prefix) == (redis_url, key_prefix)
    settings = Settings.from_env()
    assert (settings.redis_url, settings.key_prefix) == (redis_url, key_prefix)
    assert settings.effective_database_url == database
    # And an event published with no argument reaches that stream
    publisher.publish("RECORDING_STARTED_EVENT")
    assert publisher._redis.xlen(f"{key_prefix}events") == 1
    # But what is configured explicitly wins
    os.environ["RECNOTIFY_REDIS_URL"] = "redis://127.0.0.1:1/0"
    try:
        assert Publisher().redis_url == "redis://127.0.0.1:1/0"
        assert Settings.from_env().redis_url == "redis://127.0.0.1:1/0"
    finally:
        del os.environ["RECNOTIFY_REDIS_URL"]


def test_a_run_file_whose_process_is_gone_is_ignored(clean_env: Path) -> None:
    clean_env.mkdir(parents=True)
    write_run_file(clean_env, RunInfo("redis://127.0.0.1:1/0", "x:", "sqlite://", _dead_pid()))
    assert read_run_file(clean_env) is None
    assert Publisher().redis_url == "redis://127.0.0.1:6379/0"
    assert Settings.from_env().key_prefix == "recnotify:"


def test_a_command_never_creates_an_empty_database_and_says_where_it_looked(
        clean_env: Path) -> None:
    runner = CliRunner()
    for command in (["destinations", "list"], ["dead-letters", "list"], ["trace", "x"],
                    ["destinations", "export"], ["worker"], ["admin"]):
        result = runner.invoke(main, command)
        assert result.exit_code == 1, (command, result.output)
        lines = result.output.strip().splitlines()
        assert lines == [f"error: no recnotify database at {clean_env / 'recnotify.db'}: start "
                         "the service with `recnotify run` (it creates it), or create it with "
                         "`recnotify db upgrade`; or point --data-dir / RECNOTIFY_DATA_DIR "
                         f"(now {clean_env}) or RECNOTIFY_DATABASE_URL at the service's "
                         "database"], command
    checked = runner.invoke(main, ["check"])
    assert checked.exit_code == 1 and "no recnotify database at" in checked.output
    assert not clean_env.exists()


def test_a_database_without_the_schema_is_refused_not_reported_empty(clean_env: Path) -> None:
    import sqlite3

    clean_env.mkdir(parents=True)
    sqlite3.connect(clean_env / "recnotify.db").close()
    result = CliRunner().invoke(main, ["destinations", "list"])
    assert result.exit_code == 1
    assert "has no recnotify tables" in result.output and "no destinations" not in result.output


def test_data_dir_works_before_and_after_any_command(clean_env: Path, tmp_path: Path) -> None:
    runner = CliRunner(env={"RECNOTIFY_SECRET_KEY": TEST_SECRET_KEY})
    other = tmp_path / "other"
    assert runner.invoke(main, ["--data-dir", str(other), "db", "upgrade"]).exit_code == 0
    assert (other / "recnotify.db").is_file()
    for argv in (["destinations", "list", "--data-dir", str(other)],
                 ["destinations", "--data-dir", str(other), "list"],
                 ["--data-dir", str(other), "dead-letters", "list"]):
        result = runner.invoke(main, argv)
        assert result.exit_code == 0, (argv, result.output)
    assert not clean_env.exists()


@pytest.mark.slow
def test_listen_prints_a_real_delivery_and_verifies_its_signature(
        workers: WorkerFactory, tmp_path: Path) -> None:
    # Given `recnotify listen` with the destination's secret, and one with another secret
    secret, port, other_port = generate_secret(), free_port(), free_port()
    logs = {p: tmp_path / f"listen-{p}.log" for p in (port, other_port)}
    listeners = [
        subprocess.Popen([sys.executable, "-m", "workers", "listen", "--port", str(p),
                          "--secret", s], stdout=logs[p].open("wb"), stderr=subprocess.STDOUT,
                         cwd=ROOT)
        for p, s in ((port, secret), (other_port, generate_secret()))
    ]
    try:
        workers.configure(f"""destinations:
  - name: crm
    preset: json
    scope: global
    url: http://127.0.0.1:{port}/hooks/crm
    secret: {secret}
  - name: crm-other
    preset: json
    scope: global
    url: http://127.0.0.1:{other_port}/hooks/crm
    secret: {secret}
  - name: face
    preset: face
    scope: global
    url: http://127.0.0.1:{port}/Face/eventNotify
    secret: {secret}
""")
        workers.start()
        # When an event is published
        event_id = workers.publisher().publish(
            "RECORDING_STARTED_EVENT", route="r",
            params={"UCID": "13-1@1.2.3.4", "CALLEDAORS": ["sip:7@1.2.3.1:5060"]})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            text = logs[port].read_text()
            if text.count("signature:") >= 2 and "signature:" in logs[other_port].read_text():
                break
            time.sleep(0.2)
        text = logs[port].read_text()
        # Then each request is printed with its decoded parameters, headers and body
        get = text[text.index("GET /Face/eventNotify"):]
        assert "calledAors = sip:7@1.2.3.1:5060" in get and "ucid = 13-1@1.2.3.4" in get
        assert "signature: verified" in get.split("\n\n")[0]
        post = text[text.index("POST /hooks/crm"):].split("\n\n")[0]
        assert f'"id": "{event_id}"' in post and "webhook-id: msg_" in post
        assert "signature: verified" in post
        # And a signature made with another secret does not verify
        assert "signature: INVALID: does not match --secret" in logs[other_port].read_text()
    finally:
        for listener in listeners:
            stop_process(listener)


def test_listen_refuses_a_malformed_secret_in_one_line() -> None:
    result = CliRunner().invoke(main, ["listen", "--secret", "nope"])
    assert result.exit_code == 1
    assert result.output.strip() == "error: --secret: signing secret must start with 'whsec_'"
    assert "Example" in CliRunner().invoke(main, ["listen", "--help"]).output


def test_listen_on_a_taken_port_says_so_in_one_line() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["listen", "--port", str(port)])
    assert result.exit_code == 1
    assert result.output.strip().startswith(f"error: cannot listen on 127.0.0.1:{port}: ")
    assert result.output.strip().endswith("choose another --port")


def test_available_cpus_follows_the_affinity_mask() -> None:
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no sched_setaffinity on this platform")
    script = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
              "from workers.service import available_cpus; print(available_cpus())")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.strip() == "1"


@pytest.mark.slow
def test_worker_runs_one_process_per_cpu_by_default_and_stops_them_all(
        workers: WorkerFactory, tmp_path: Path) -> None:
    # Given `recnotify worker` with no --processes (and no RECNOTIFY_PROCESSES)
    workers.store  # noqa: B018 - the schema first
    cpus = available_cpus()
    env = workers.env()
    env.pop("RECNOTIFY_PROCESSES", None)
    log = (tmp_path / "worker.log").open("wb")
    parent = subprocess.Popen([sys.executable, "-m", "workers", "worker", "-c", "4",
                               "--node-name", "multi"], env=env, stdout=log,
                              stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        # Then one heartbeat per CPU appears, one per child process
        client = workers.redis
        keys = [workers.settings.keys.heartbeat(f"multi-p{i}") for i in range(cpus)]
        deadline = time.monotonic() + 60
        while not all(client.exists(k) for k in keys) and time.monotonic() < deadline:
            assert parent.poll() is None, (tmp_path / "worker.log").read_text()
            time.sleep(0.2)
        assert all(client.exists(k) for k in keys), (tmp_path / "worker.log").read_text()
        children = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True,
                                  text=True).stdout.split()
        assert len(children) == cpus
        # When the parent is stopped, every child stops with it
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(60) == 0
        for pid in children:
            assert not Path(f"/proc/{pid}").exists() or \
                Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    finally:
        stop_process(parent)
        log.close()
