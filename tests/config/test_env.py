"""The environment at the edge (workers/config/env.py): typed, bounded, one line per mistake,
a warning for a misspelt variable, and every variable documented."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.helpers import ROOT
from workers.config.env import KNOWN, EnvSettings, read_env, unknown_variables
from workers.config.settings import Settings
from workers.errors import ConfigError


@pytest.mark.parametrize(("name", "value", "says"), [
    ("RECNOTIFY_CONCURRENCY", "abc", "give a whole number"),
    ("RECNOTIFY_CONCURRENCY", "0", "give a whole number >= 1"),
    ("RECNOTIFY_WATCHDOG_S", "5", "give a number >= 10"),
    ("RECNOTIFY_CLAIM_IDLE_S", "-1", "give a number > 0"),
    ("RECNOTIFY_MAX_COUNTDOWN_S", "301", "give a number <= 300"),
    ("RECNOTIFY_LOG_LEVEL", "foo", "give one of 'DEBUG'"),
    ("RECNOTIFY_LOG_FORMAT", "xml", "give one of 'text' or 'json'"),
])
def test_a_bad_value_is_one_line_naming_the_variable_and_what_it_accepts(
        name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({name: value}, discover=False)
    message = str(caught.value)
    assert message.startswith(f"{name}={value!r} is not valid: ") and says in message
    assert "\n" not in message


@given(st.text(max_size=20))
def test_any_concurrency_text_is_read_or_refused_with_the_variable_named(text: str) -> None:
    try:
        concurrency = read_env({"RECNOTIFY_CONCURRENCY": text}).CONCURRENCY
    except ConfigError as exc:
        assert str(exc).startswith("RECNOTIFY_CONCURRENCY=")
    else:
        assert 1 <= concurrency <= 1024


def test_levels_and_formats_are_read_in_any_case() -> None:
    typed = read_env({"RECNOTIFY_LOG_LEVEL": "debug", "RECNOTIFY_LOG_FORMAT": "JSON"})
    assert (typed.LOG_LEVEL, typed.LOG_FORMAT) == ("DEBUG", "json")


def test_a_misspelt_variable_gets_a_warning_naming_the_closest_known_one() -> None:
    env = {"RECNOTIFY_CONCURENCY": "8", "RECNOTIFY_REDIS_URL": "redis://x", "HOME": "/"}
    assert unknown_variables(env) == [
        "RECNOTIFY_CONCURENCY is not a recnotify setting and is ignored; did you mean "
        "RECNOTIFY_CONCURRENCY?"]
    assert unknown_variables({"RECNOTIFY_ZZZZZZZZ": "1"}) == [
        "RECNOTIFY_ZZZZZZZZ is not a recnotify setting and is ignored"]


def test_a_retired_variable_gets_a_warning_naming_what_replaced_it() -> None:
    assert unknown_variables({"RECNOTIFY_VISIBILITY_TIMEOUT_S": "100"}) == [
        "RECNOTIFY_VISIBILITY_TIMEOUT_S is no longer read and is ignored: kombu's ack "
        "emulation is off and the watchdog brings back a dead worker's tasks; set "
        "RECNOTIFY_WATCHDOG_S instead"]


def test_a_command_warns_about_a_misspelt_variable_and_refuses_a_bad_one_in_one_line(
        tmp_path: object) -> None:
    base = [sys.executable, "-m", "workers"]
    warned = subprocess.run([*base, "check", "--help"], cwd=ROOT, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "RECNOTIFY_WATCHDOG_SS": "5"})
    assert warned.returncode == 0
    assert ("warning: RECNOTIFY_WATCHDOG_SS is not a recnotify setting and is "
            "ignored; did you mean RECNOTIFY_WATCHDOG_S?") in warned.stderr
    refused = subprocess.run([*base, "check"], cwd=ROOT, capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin", "RECNOTIFY_CONCURRENCY": "abc"})
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        "error: RECNOTIFY_CONCURRENCY='abc' is not valid: give a whole number"]


def test_every_variable_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"RECNOTIFY_[A-Z0-9_]+", readme))
    assert set(KNOWN) - documented == set()
    assert {f"RECNOTIFY_{name}" for name in EnvSettings.model_fields} <= documented


@pytest.mark.parametrize(("env", "says"), [
    ({"RECNOTIFY_CELLS": "redis://a/0,redis://b/0", "RECNOTIFY_CELL_TABLE": "big=5"},
     "RECNOTIFY_CELL_TABLE sends account 'big' to cell '5', which is not a cell"),
    ({"RECNOTIFY_CELL_TABLE": "big=1"}, "RECNOTIFY_CELL_TABLE is set but RECNOTIFY_CELLS is not"),
    ({"RECNOTIFY_CELLS": "redis://a/0,localhost:6379"}, "not a Redis URL"),
])
def test_a_bad_cell_configuration_is_one_line(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match=says) as caught:
        Settings.from_env(env, discover=False)
    assert "\n" not in str(caught.value)


def test_for_cell_gives_the_settings_that_cell_s_workers_run_with() -> None:
    settings = Settings.from_env({"RECNOTIFY_CELLS": "a=redis://h1/0,b=redis://h2/1",
                                  "RECNOTIFY_CELL_TABLE": "big=b"}, discover=False)
    router = settings.cell_router
    assert router is not None and router.index_for(account="big") == 1
    cell_b = settings.for_cell(1)
    assert (cell_b.redis_url, cell_b.cell_router) == ("redis://h2/1", None)
    assert Settings.from_env({}, discover=False).cell_router is None
