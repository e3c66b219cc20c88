"""The `recnotify` command line, against a real Redis and a SQLite store."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from tests.helpers import TEST_SECRET_KEY
from workers.cli.main import main
from workers.cli.run import resolve_redis
from workers.config.settings import Settings
from workers.errors import ConfigError
from workers.http.signing import generate_secret
from workers.ops.embedded import free_port, redis_answers


@pytest.fixture
def cli(redis_url: str, key_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
        ) -> CliRunner:
    for name in ("RECNOTIFY_DATABASE_URL", "RECNOTIFY_ALLOW_CIDRS", "RECNOTIFY_DENY_CIDRS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RECNOTIFY_REDIS_URL", redis_url)
    monkeypatch.setenv("RECNOTIFY_KEY_PREFIX", key_prefix)
    monkeypatch.setenv("RECNOTIFY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RECNOTIFY_SECRET_KEY", TEST_SECRET_KEY)
    runner = CliRunner()
    result = runner.invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    return runner


GOOD = """destinations:
  - name: face-started
    events: [RECORDING_STARTED_EVENT]
    scope: route:support-line
    url: https://10.0.0.5:8443/Face/eventNotify
    params: "event=AudioRecordingStarted&calledAors=%CALLEDAORS%&ucid=%UCID%"
  - name: crm
    preset: json
    scope: account:acme
    url: https://user:hunter2@crm.example.com/hook
    secret: SECRET
"""


def test_publish_prints_the_event_id_and_writes_the_stream(cli: CliRunner, redis_url: str,
                                                           key_prefix: str) -> None:
    result = cli.invoke(main, ["publish", "RECORDING_STARTED_EVENT", "--route", "r",
                               "--param", "UCID=u1", "--param", "CALLEDAORS=a",
                               "--param", "CALLEDAORS=b"])
    assert result.exit_code == 0, result.output
    event_id = result.output.strip()
    ((_, fields),) = redis.Redis.from_url(redis_url).xrange(f"{key_prefix}events")
    event = json.loads(fields[b"event"])
    assert event["id"] == event_id and event["params"]["CALLEDAORS"] == ["a", "b"]


def test_publish_of_an_invalid_event_exits_1_naming_the_value(cli: CliRunner) -> None:
    result = cli.invoke(main, ["publish", "RECORDING_STARTED_EVENT", "--param", "FOO=1"])
    assert result.exit_code == 1
    assert "'FOO' is not a parameter of RECORDING_STARTED_EVENT" in result.output


def test_import_list_show_export_masks_every_secret(cli: CliRunner, tmp_path: Path) -> None:
    secret = generate_secret()
    path = tmp_path / "d.yaml"
    path.write_text(GOOD.replace("SECRET", secret))
    result = cli.invoke(main, ["destinations", "import", str(path)])
    assert result.exit_code == 0, result.output
    assert "2 created, 0 updated, 0 removed" in result.output
    listing = cli.invoke(main, ["destinations", "list"]).output
    assert "face-started" in listing and "crm" in listing
    shown = cli.invoke(main, ["destinations", "show", "crm"]).output
    exported = cli.invoke(main, ["destinations", "export"]).output
    for text in (listing, shown, exported):
        assert secret not in text and "hunter2" not in text
    assert "********" in shown
    with_secrets = cli.invoke(main, ["destinations", "export", "--include-secrets"]).output
    assert secret in with_secrets and "hunter2" in with_secrets


def test_a_file_with_one_bad_destination_changes_nothing(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text(GOOD.replace("SECRET", generate_secret()) + """  - name: broken
    events: [RECORDING_STARTED_EVENT]
    scope: route:x
    url: http://x.example/
    params: "f=%FILENAME%"
""")
    result = cli.invoke(main, ["destinations", "import", str(path)])
    assert result.exit_code == 1
    assert "broken" in result.output and "FILENAME" in result.output
    assert "params" in result.output
    listing = cli.invoke(main, ["destinations", "list"]).output
    assert "face-started" not in listing


def test_remove_enable_disable_and_unknown_names(cli: CliRunner, tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text(GOOD.replace("SECRET", generate_secret()))
    cli.invoke(main, ["destinations", "import", str(path)])
    assert cli.invoke(main, ["destinations", "disable", "crm"]).exit_code == 0
    assert "DISABLED" in cli.invoke(main, ["destinations", "list"]).output
    assert cli.invoke(main, ["destinations", "enable", "crm"]).exit_code == 0
    assert cli.invoke(main, ["destinations", "remove", "crm"]).exit_code == 0
    missing = cli.invoke(main, ["destinations", "show", "crm"])
    assert missing.exit_code == 1 and "'crm'" in missing.output


def test_dead_letters_list_and_purge_when_empty(cli: CliRunner) -> None:
    assert "no dead letters" in cli.invoke(main, ["dead-letters", "list"]).output
    assert "purged 0" in cli.invoke(main, ["dead-letters", "purge", "--yes"]).output


def test_check_fails_with_the_reason_when_no_worker_runs(cli: CliRunner) -> None:
    result = cli.invoke(main, ["check"])
    assert result.exit_code == 1 and "no recnotify worker is running" in result.output
    result = cli.invoke(main, ["check", "--self"])
    assert result.exit_code == 1 and "heartbeat" in result.output


def test_every_command_has_help_with_an_example(cli: CliRunner) -> None:
    commands = [["publish"], ["worker"], ["run"], ["check"], ["trace"], ["db", "upgrade"],
                ["destinations", "import"], ["destinations", "export"],
                ["destinations", "list"], ["destinations", "show"], ["dead-letters", "replay"],
                ["dead-letters", "purge"], ["dead-letters", "list"]]
    for command in commands:
        result = cli.invoke(main, [*command, "--help"])
        assert result.exit_code == 0, command
        assert "Example" in result.output, command


def test_run_refuses_an_explicit_redis_url_that_does_not_answer(tmp_path: Path) -> None:
    settings = Settings.from_env({"RECNOTIFY_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"},
                                 data_dir=tmp_path)
    with pytest.raises(ConfigError, match="does not answer"):
        resolve_redis(settings)


def test_run_starts_an_embedded_redis_with_aof_when_none_answers(tmp_path: Path) -> None:
    settings = replace(Settings.from_env({}, data_dir=tmp_path),
                       redis_url=f"redis://127.0.0.1:{free_port()}/0", redis_url_explicit=False)
    resolved, embedded = resolve_redis(settings)
    assert embedded is not None
    try:
        assert redis_answers(resolved.redis_url)
        config = redis.Redis.from_url(resolved.redis_url).config_get("*")
        assert config["appendonly"] == "yes" and config["maxmemory-policy"] == "noeviction"
        assert (tmp_path / "redis").is_dir()
    finally:
        embedded.stop()


def test_run_keeps_its_generated_key_and_flower_login_private_and_stable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import stat

    from workers.cli.run import flower_credentials
    from workers.config.secret_key import ensure_key_file

    monkeypatch.delenv("RECNOTIFY_FLOWER_AUTH", raising=False)
    key, login = ensure_key_file(tmp_path), flower_credentials(tmp_path)
    assert ensure_key_file(tmp_path) == key and len(key) >= 16
    assert flower_credentials(tmp_path) == login and login.startswith("admin:")
    for name in ("secret.key", "flower.auth"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600


@pytest.mark.parametrize("command", [["trace", "00000000-0000-0000-0000-000000000001"],
                                     ["dead-letters", "purge", "--yes"],
                                     ["worker", "--processes", "1"], ["worker"]])
def test_a_command_against_a_stopped_redis_is_one_line_not_a_traceback(
        command: list[str], tmp_path: Path) -> None:
    import subprocess
    import sys


    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
           "RECNOTIFY_DATA_DIR": str(tmp_path / "data"),
           "RECNOTIFY_REDIS_URL": "redis://:pw@127.0.0.1:1/0"}
    base = [sys.executable, "-m", "workers"]
    subprocess.run([*base, "db", "upgrade"], env=env, cwd=tmp_path, check=True,
                   capture_output=True, timeout=60)
    done = subprocess.run([*base, *command], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    lines = [line for line in done.stderr.strip().splitlines()
             if "SecurityWarning" not in line]
    assert lines == [
        "error: Redis at redis://:***@127.0.0.1:1/0 does not answer (Error 111 connecting "
        "to 127.0.0.1:1. Connection refused.): start it (`recnotify run` starts one), or "
        "point --redis-url / RECNOTIFY_REDIS_URL at the service's Redis"], done.stderr[-2000:]


EVERY_COMMAND = [
    ["publish", "RECORDING_STARTED_EVENT"], ["worker"], ["run"], ["check"], ["trace", "x"],
    ["db", "upgrade"], ["admin"], ["listen"],
    ["destinations", "import", "f.yaml"], ["destinations", "export"], ["destinations", "list"],
    ["destinations", "show", "x"], ["destinations", "remove", "x"],
    ["destinations", "enable", "x"], ["destinations", "disable", "x"],
    ["destinations", "schema"],
    ["dead-letters", "list"], ["dead-letters", "replay"], ["dead-letters", "purge"],
]


def one_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=" ".join)
def test_a_usage_mistake_is_one_line_exit_1_pointing_at_the_help(
        cli: CliRunner, command: list[str]) -> None:
    result = cli.invoke(main, [*command, "--no-such-option"])
    assert result.exit_code == 1, result.output
    group = command[:2] if command[0] in ("db", "destinations", "dead-letters") else command[:1]
    assert one_line(result.output) == (
        f"error: No such option '--no-such-option'. (see `main {' '.join(group)} --help`)")


@pytest.mark.parametrize("command, value", [
    (["worker", "--processes"], "abc"), (["listen", "--port"], "abc"),
    (["destinations", "import"], "/no/such/file.yaml"), (["--log-level"], "loud"),
    (["admin", "--addr"], "nowhere"), (["publish", "NO_SUCH_EVENT", "--param"], "x"),
], ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_a_bad_option_value_is_one_line_exit_1_naming_it(
        cli: CliRunner, command: list[str], value: str) -> None:
    result = cli.invoke(main, [*command, value, *(["check"] if command == ["--log-level"] else [])])
    assert result.exit_code == 1, result.output
    line = one_line(result.output)
    assert line.startswith("error: ") and (value in line or "Invalid value" in line), line


NEEDS_THE_DATABASE = [
    ["destinations", "list"], ["destinations", "export"], ["destinations", "show", "x"],
    ["destinations", "remove", "x"], ["destinations", "enable", "x"],
    ["destinations", "disable", "x"], ["dead-letters", "list"],
    ["dead-letters", "replay"], ["dead-letters", "purge", "--yes"],
    ["trace", "00000000-0000-0000-0000-000000000001"], ["admin"],
]


@pytest.mark.parametrize("command", NEEDS_THE_DATABASE, ids=" ".join)
def test_a_missing_schema_is_one_line_saying_where_it_looked(
        redis_url: str, key_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        command: list[str]) -> None:
    monkeypatch.delenv("RECNOTIFY_DATABASE_URL", raising=False)
    monkeypatch.setenv("RECNOTIFY_REDIS_URL", redis_url)
    monkeypatch.setenv("RECNOTIFY_KEY_PREFIX", key_prefix)
    monkeypatch.setenv("RECNOTIFY_DATA_DIR", str(tmp_path / "empty"))
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 1, result.output
    line = one_line(result.output)
    assert line.startswith(f"error: no recnotify database at {tmp_path / 'empty'}"), line
    assert "recnotify db upgrade" in line
    assert not (tmp_path / "empty" / "recnotify.db").exists()


@pytest.mark.parametrize("command", [[], ["destinations"], ["dead-letters"], ["db"]])
def test_a_group_without_a_command_prints_its_help_and_exits_0(
        cli: CliRunner, command: list[str]) -> None:
    result = cli.invoke(main, command)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: ") and "Commands:" in result.output
    assert "error:" not in result.output
