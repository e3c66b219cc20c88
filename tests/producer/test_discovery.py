"""Commands and Publisher() find the service without being told (SPEC 7), `recnotify
listen` shows real deliveries, and `recnotify worker` uses every CPU by default."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from producer import Publisher
from producer.discovery import (
    RunInfo,
    default_data_dir,
    read_pointer,
    read_run_file,
    remove_pointer,
    write_pointer,
    write_run_file,
)
from tests.helpers import ROOT, TEST_SECRET_KEY, WorkerFactory, stop_process
from workers.cli.main import main
from workers.config.settings import Settings
from workers.http.signing import generate_secret
from workers.ops.embedded import free_port
from workers.taskqueue.service import available_cpus


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@dataclass(frozen=True)
class Dirs:
    """Where a test runs: ``here`` (the cwd), its default data dir, the per-user dir."""

    here: Path
    elsewhere: Path
    home: Path

    @property
    def default(self) -> Path:
        return self.here / ".recnotify"

    @property
    def user(self) -> Path:
        return self.home / ".local" / "share" / "recnotify"


@pytest.fixture
def dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Dirs:
    """No RECNOTIFY_* variable, a HOME of its own (its own pointer), cwd ``here``."""
    for name in list(os.environ):
        if name.startswith("RECNOTIFY_"):
            monkeypatch.delenv(name)
    found = Dirs(here=tmp_path / "here", elsewhere=tmp_path / "elsewhere",
                 home=tmp_path / "home")
    for path in (found.here, found.elsewhere, found.home):
        path.mkdir()
    monkeypatch.setenv("HOME", str(found.home))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.chdir(found.here)
    return found


@pytest.fixture
def clean_env(dirs: Dirs) -> Path:
    """The default data dir of the current directory (``./.recnotify``)."""
    return dirs.default


def _info(redis_url: str, key_prefix: str, data_dir: Path, pid: int) -> RunInfo:
    return RunInfo(redis_url, key_prefix, f"sqlite:///{data_dir / 'elsewhere.db'}", pid,
                   str(data_dir))


def test_the_default_data_dir_is_the_current_directorys_dot_recnotify(dirs: Dirs) -> None:
    # SPEC 7: RECNOTIFY_DATA_DIR, default ./.recnotify
    assert Settings.from_env().data_dir == dirs.default == default_data_dir()
    assert Settings().data_dir == dirs.default
    os.chdir(dirs.elsewhere)
    assert Settings.from_env().data_dir == dirs.elsewhere / ".recnotify" == default_data_dir()
    assert Settings.from_env({"RECNOTIFY_DATA_DIR": str(dirs.here)}).data_dir == dirs.here
    assert not dirs.user.exists()


def test_publisher_and_commands_use_the_redis_of_a_live_run_file(
        clean_env: Path, redis_url: str, key_prefix: str) -> None:
    # Given a run file of a live process (this one) in ./.recnotify
    clean_env.mkdir(parents=True)
    info = _info(redis_url, key_prefix, clean_env, os.getpid())
    write_run_file(clean_env, info)
    assert (clean_env / "run.json").stat().st_mode & 0o077 == 0
    # Then Publisher() and the settings of every command use what it names
    publisher = Publisher()
    assert (publisher.redis_url, publisher.key_prefix) == (redis_url, key_prefix)
    settings = Settings.from_env()
    assert (settings.redis_url, settings.key_prefix) == (redis_url, key_prefix)
    assert settings.effective_database_url == info.database_url
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


def test_from_another_directory_commands_and_publisher_find_the_run_through_the_pointer(
        dirs: Dirs, redis_url: str, key_prefix: str) -> None:
    # Given a live run (this process) in ./.recnotify of `here`, its schema and secret key
    runner = CliRunner(env={"RECNOTIFY_SECRET_KEY": TEST_SECRET_KEY})
    assert runner.invoke(main, ["--data-dir", str(dirs.default), "db", "upgrade"]).exit_code == 0
    (dirs.default / "secret.key").write_text(TEST_SECRET_KEY + "\n")
    info = RunInfo(redis_url, key_prefix, f"sqlite:///{dirs.default / 'recnotify.db'}",
                   os.getpid(), str(dirs.default))
    write_run_file(dirs.default, info)
    write_pointer(info)
    assert (dirs.user / "run.json").stat().st_mode & 0o077 == 0
    # When commands and Publisher() run from another directory with no environment
    os.chdir(dirs.elsewhere)
    settings = Settings.from_env()
    # Then they use the run's data dir (database, secret key) and its Redis and prefix
    assert settings.data_dir == dirs.default
    assert (settings.redis_url, settings.key_prefix) == (redis_url, key_prefix)
    assert settings.effective_database_url == info.database_url
    assert settings.secret_key == TEST_SECRET_KEY
    publisher = Publisher()
    assert (publisher.redis_url, publisher.key_prefix) == (redis_url, key_prefix)
    publisher.publish("RECORDING_STARTED_EVENT")
    assert publisher._redis.xlen(f"{key_prefix}events") == 1
    (dirs.elsewhere / "d.yaml").write_text(
        "destinations:\n  - name: crm\n    preset: json\n    scope: global\n"
        "    url: http://127.0.0.1:9/hooks\n    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n")
    clean = CliRunner()
    imported = clean.invoke(main, ["destinations", "import", "d.yaml"])
    assert imported.exit_code == 0, imported.output
    listed = clean.invoke(main, ["destinations", "list"])
    assert listed.exit_code == 0 and "crm" in listed.output, listed.output
    # And nothing was created where they ran
    assert sorted(p.name for p in dirs.elsewhere.iterdir()) == ["d.yaml"]
    # But an explicit data dir counts alone: the pointer is ignored
    other = dirs.elsewhere / "explicit"
    given = Settings.from_env(data_dir=other)
    assert (given.data_dir, given.redis_url, given.key_prefix) == (
        other, "redis://127.0.0.1:6379/0", "recnotify:")
    os.environ["RECNOTIFY_DATA_DIR"] = str(other)
    try:
        assert Publisher().redis_url == "redis://127.0.0.1:6379/0"
        assert Settings.from_env().data_dir == other
    finally:
        del os.environ["RECNOTIFY_DATA_DIR"]
    refused = clean.invoke(main, ["destinations", "list", "--data-dir", str(other)])
    assert refused.exit_code == 1
    assert f"no recnotify database at {other / 'recnotify.db'}" in refused.output


def test_the_current_directorys_live_run_wins_over_the_pointer(
        dirs: Dirs, redis_url: str, key_prefix: str) -> None:
    dirs.default.mkdir()
    write_run_file(dirs.default, _info(redis_url, key_prefix, dirs.default, os.getpid()))
    write_pointer(_info("redis://127.0.0.1:1/0", "other:", dirs.elsewhere, os.getpid()))
    settings = Settings.from_env()
    assert (settings.data_dir, settings.key_prefix) == (dirs.default, key_prefix)
    assert Publisher().key_prefix == key_prefix


def test_a_dead_run_file_or_pointer_is_ignored(dirs: Dirs) -> None:
    dirs.default.mkdir()
    dead = _dead_pid()
    write_run_file(dirs.default, _info("redis://127.0.0.1:1/0", "x:", dirs.default, dead))
    write_pointer(_info("redis://127.0.0.1:1/0", "x:", dirs.elsewhere, dead))
    assert read_run_file(dirs.default) is None and read_pointer() is None
    assert Publisher().redis_url == "redis://127.0.0.1:6379/0"
    settings = Settings.from_env()
    assert (settings.data_dir, settings.key_prefix) == (dirs.default, "recnotify:")
    os.chdir(dirs.elsewhere)
    assert Settings.from_env().data_dir == dirs.elsewhere / ".recnotify"


def test_a_removed_current_directory_is_one_line_and_the_pointer_still_works(
        dirs: Dirs, redis_url: str, key_prefix: str) -> None:
    gone = dirs.elsewhere / "gone"
    gone.mkdir()
    os.chdir(gone)
    gone.rmdir()
    result = CliRunner().invoke(main, ["destinations", "list"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: the current directory no longer exists, so the default data dir ./.recnotify "
        "cannot be used: cd to an existing directory, or give --data-dir / RECNOTIFY_DATA_DIR"]
    assert Publisher().redis_url == "redis://127.0.0.1:6379/0"
    dirs.default.mkdir()
    write_pointer(_info(redis_url, key_prefix, dirs.default, os.getpid()))
    assert Settings.from_env().data_dir == dirs.default
    assert Publisher().key_prefix == key_prefix


def test_the_pointer_goes_to_the_latest_live_run_and_back_when_it_stops(dirs: Dirs) -> None:
    # Given run A (this process), then run B (another live process) on other data dirs
    first, second = dirs.here / "a", dirs.here / "b"
    first.mkdir()
    second.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        info_a = _info("redis://127.0.0.1:1/0", "a:", first, os.getpid())
        info_b = _info("redis://127.0.0.1:2/0", "b:", second, sleeper.pid)
        write_run_file(first, info_a)
        write_pointer(info_a)
        previous = read_pointer()
        write_run_file(second, info_b)
        write_pointer(info_b)
        # Then the latest wins
        assert read_pointer() == info_b
        # And another pid's stop leaves the pointer alone
        remove_pointer(os.getpid() + 10**6, previous)
        assert read_pointer() == info_b
        # When B stops, the pointer goes back to A, still alive
        remove_pointer(sleeper.pid, previous)
        assert read_pointer() == info_a
        # When A stops with nothing before it, the pointer is gone
        remove_pointer(os.getpid(), None)
        assert not (dirs.user / "run.json").exists()
    finally:
        stop_process(sleeper)


@pytest.mark.slow
def test_a_real_run_is_found_from_another_directory_and_cleans_up_at_stop(
        dirs: Dirs, redis_url: str, key_prefix: str) -> None:
    # Given `recnotify run` started in `here` (its data dir: here/.recnotify)
    venv_bin = Path(sys.executable).parent
    base = {"HOME": str(dirs.home), "PATH": os.environ.get("PATH", "")}
    run_env = {**base, "RECNOTIFY_REDIS_URL": redis_url, "RECNOTIFY_KEY_PREFIX": key_prefix,
               "RECNOTIFY_ADMIN_ADDR": f"127.0.0.1:{free_port()}"}
    log_path = dirs.home / "run.log"
    with log_path.open("wb") as log:
        service = subprocess.Popen([str(venv_bin / "recnotify"), "run", "--processes", "1",
                                    "--flower-port", "0"], cwd=dirs.here, env=run_env,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "Data dir:" not in log_path.read_text() and time.monotonic() < deadline:
            assert service.poll() is None, log_path.read_text()
            time.sleep(0.2)
        assert f"Data dir: {dirs.default}" in log_path.read_text(), log_path.read_text()
        # Then its run file and the per-user pointer both name its absolute data dir
        pointer = read_pointer()
        assert pointer is not None and pointer == read_run_file(dirs.default)
        assert (pointer.data_dir, pointer.pid) == (str(dirs.default), service.pid)

        def elsewhere(*argv: str, env: dict[str, str] = base) -> subprocess.CompletedProcess[str]:
            return subprocess.run(argv, cwd=dirs.elsewhere, env=env, capture_output=True,
                                  text=True, timeout=60)

        # And from another directory, with no RECNOTIFY_* set, commands use its database
        listed = elsewhere(str(venv_bin / "recnotify"), "destinations", "list")
        assert listed.returncode == 0 and "no destinations" in listed.stdout, listed.stderr
        published = elsewhere(str(venv_bin / "recnotify"), "publish", "RECORDING_STARTED_EVENT")
        assert published.returncode == 0, published.stderr
        traced = elsewhere(str(venv_bin / "recnotify"), "trace", published.stdout.strip())
        assert "RECORDING_STARTED_EVENT" in traced.stdout, traced.stdout + traced.stderr
        found = elsewhere(sys.executable, "-c", "from producer import Publisher; "
                          "p = Publisher(); print(p.redis_url, p.key_prefix)")
        assert found.stdout.split() == [redis_url, key_prefix], found.stderr
        assert list(dirs.elsewhere.iterdir()) == []
        # And a second run elsewhere on the same Redis and prefix refuses in one line
        second = elsewhere(str(venv_bin / "recnotify"), "run", "--flower-port", "0",
                           env=run_env)
        assert second.returncode == 1
        assert second.stderr.strip().splitlines() == [
            f"error: `recnotify run` (pid {service.pid}) already serves Redis {redis_url} "
            f"with key prefix {key_prefix!r} for data dir {dirs.default}; a second one for "
            f"{dirs.elsewhere / '.recnotify'} would share its events with another database: "
            "use that one (every command finds it from any directory), stop it first, or "
            "give this one its own RECNOTIFY_KEY_PREFIX or RECNOTIFY_REDIS_URL"], second.stderr
        assert list(dirs.elsewhere.iterdir()) == []
        # When it stops, both files go with it
        service.send_signal(signal.SIGTERM)
        assert service.wait(60) == 0, log_path.read_text()
        assert not (dirs.default / "run.json").exists()
        assert not (dirs.user / "run.json").exists()
    finally:
        stop_process(service)


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
    assert result.output.strip() == ("error: Invalid value for --secret: signing secret must start "
                                     "with 'whsec_' (see `main listen --help`)")
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
              "from workers.taskqueue.service import available_cpus; print(available_cpus())")
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


def test_a_database_of_an_older_schema_is_refused_with_the_upgrade_command(
        clean_env: Path) -> None:
    from sqlalchemy import create_engine

    from workers.store.migrations import upgrade_connection

    clean_env.mkdir(parents=True)
    engine = create_engine(f"sqlite:///{clean_env / 'recnotify.db'}")
    with engine.begin() as conn:
        upgrade_connection(conn, "0002")  # before the events table
    engine.dispose()
    for command in (["destinations", "list"], ["worker"], ["trace", "x"]):
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 1, (command, result.output)
        (line,) = result.output.strip().splitlines()
        assert "has an older recnotify schema" in line and "`recnotify db upgrade`" in line
    upgraded = CliRunner().invoke(main, ["db", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    assert CliRunner().invoke(main, ["destinations", "list"]).exit_code == 0
