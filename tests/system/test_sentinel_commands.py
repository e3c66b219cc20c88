"""Every command under the README's ``sentinel://`` URL, against real sentinels.

One real Sentinel setup (primary, replica, three sentinels), one real
``recnotify worker`` and one real receiver serve the module; each test runs one
command the way an operator does (``python -m workers ...`` with
``RECNOTIFY_REDIS_URL=sentinel://...``) and checks what it did in Redis, the
database or at the receiver.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.admin_server import AdminServer
from tests.helpers import ROOT, WorkerFactory, fast_retry
from tests.receiver import Receiver
from tests.sentinel import SentinelSetup

pytestmark = pytest.mark.slow


@dataclass
class Stack:
    sentinels: SentinelSetup
    workers: WorkerFactory
    receiver: Receiver

    def cli(self, *args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "workers", *args], env=self.workers.env(),
                              cwd=ROOT, capture_output=True, text=True, timeout=timeout_s,
                              check=False)

    def ok(self, *args: str) -> str:
        result = self.cli(*args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout

    def dead_letter(self) -> str:
        """Publish to the always-failing destination; the event id once it is a dead letter."""
        event_id = self.workers.publisher().publish("RECORDING_STARTED_EVENT", route="fail",
                                                    params={"UCID": uuid.uuid4().hex})
        self.wait_dead_letter(event_id)
        return event_id

    def wait_dead_letter(self, event_id: str, timeout_s: float = 20) -> None:
        deadline = time.monotonic() + timeout_s
        while event_id not in {d["event_id"] for d in self.workers.store.list_dead_letters()}:
            assert time.monotonic() < deadline, f"{event_id} not a dead letter in {timeout_s} s"
            time.sleep(0.1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("sentinel-commands")
    sentinels = SentinelSetup(root / "sentinel")
    try:
        sentinels.start()
        with Receiver() as receiver:
            factory = WorkerFactory(redis_url=sentinels.url,
                                    key_prefix=f"rnsent-{uuid.uuid4().hex[:8]}:", tmp_path=root)
            retry = fast_retry(max_attempts=2)
            factory.configure(f"""destinations:
  - name: ok
    events: all
    scope: 'route:ok'
    url: '{receiver.url("/ok")}'
    params: 'n=%UCID%'
  - name: failing
    events: all
    scope: 'route:fail'
    url: '{receiver.url("/fail")}'
    retry: {retry}
    circuit: {{failures: 100000, reset_s: 1}}
""")
            receiver.script("/fail", [500])
            try:
                factory.start(concurrency=4)
                yield Stack(sentinels, factory, receiver)
            finally:
                factory.stop_all()
    finally:
        sentinels.stop()


def _with_n(n: str) -> Any:
    return lambda r: r.path == "/ok" and r.query.get("n") == [n]


def test_publish_command_writes_the_stream_and_the_worker_delivers_it(stack: Stack) -> None:
    ucid = uuid.uuid4().hex
    event_id = stack.ok("publish", "RECORDING_STARTED_EVENT", "--route", "ok",
                        "--param", f"UCID={ucid}").strip()
    assert len(event_id) == 36
    entries = stack.sentinels.primary_client().xrange(stack.workers.settings.keys.events)
    assert any(json.loads(f[b"event"])["id"] == event_id for _, f in entries)
    stack.receiver.wait_for(1, _with_n(ucid))


def test_worker_delivers_an_event_published_through_the_sentinels(stack: Stack) -> None:
    ucid = uuid.uuid4().hex
    stack.workers.publisher().publish("RECORDING_ENDED_EVENT", route="ok", params={"UCID": ucid})
    (got,) = stack.receiver.wait_for(1, _with_n(ucid))
    assert got.method == "GET"


def test_check_answers_ok(stack: Stack) -> None:
    assert stack.ok("check").strip() == "OK"


def test_trace_shows_the_delivered_event(stack: Stack) -> None:
    ucid = uuid.uuid4().hex
    event_id = stack.workers.publisher().publish("RECORDING_STARTED_EVENT", route="ok",
                                                 params={"UCID": ucid})
    stack.receiver.wait_for(1, _with_n(ucid))
    (trace,) = json.loads(stack.ok("trace", event_id, "--json"))
    assert trace["event"]["id"] == event_id
    (by_ucid,) = json.loads(stack.ok("trace", "--ucid", ucid, "--json"))
    assert by_ucid["event"]["id"] == event_id


def test_dead_letters_list_shows_the_failed_notification(stack: Stack) -> None:
    event_id = stack.dead_letter()
    letters = json.loads(stack.ok("dead-letters", "list", "--json"))
    assert event_id in {d["event_id"] for d in letters}


def test_dead_letters_replay_delivers_them_again(stack: Stack) -> None:
    event_id = stack.dead_letter()
    before = len(stack.receiver.received(lambda r: r.path == "/fail"))
    out = stack.ok("dead-letters", "replay", "--destination", "failing")
    assert "replayed" in out and not out.startswith("replayed 0 ")
    stack.receiver.wait_for(before + 1, lambda r: r.path == "/fail")
    stack.wait_dead_letter(event_id)  # it fails again: a dead letter once more


def test_dead_letters_purge_deletes_them(stack: Stack) -> None:
    stack.dead_letter()
    out = stack.ok("dead-letters", "purge", "--destination", "failing", "--yes")
    assert out.startswith("purged ") and not out.startswith("purged 0 ")
    assert stack.workers.store.list_dead_letters(destination="failing") == []


def test_destinations_list_names_both(stack: Stack) -> None:
    out = stack.ok("destinations", "list")
    assert {line.split()[0] for line in out.splitlines()} == {"ok", "failing"}


def test_admin_service_answers_status(stack: Stack) -> None:
    server = AdminServer(stack.workers)
    try:
        response = server.call("GET", "/api/status")
        assert response.status_code == 200, (response.text, server.log())
        rows = {row["destination"]: row for row in response.json()}
        assert set(rows) == {"ok", "failing"}
        assert rows["ok"]["circuit"] == "closed"
    finally:
        server.stop()


def test_run_checks_the_primarys_persistence_through_the_sentinels(
        stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    # `recnotify run` uses a configured Redis that answers, and warns when it has no AOF
    # (the setup has none); under sentinel:// redis_answers said False (so `run` refused:
    # "does not answer") and the check raised ValueError, before one factory built both
    from workers.cli.run import warn_without_persistence
    from workers.ops.embedded import redis_answers

    assert redis_answers(stack.sentinels.url)
    with caplog.at_level("WARNING"):
        warn_without_persistence(stack.sentinels.url)
    assert "AOF persistence off" in caplog.text
    assert "127.0.0.1" in caplog.text


def test_no_redis_client_is_built_outside_the_one_factory() -> None:
    # redis-py's own constructors do not take sentinel://; only client_from_url does
    pattern = re.compile(r"\bRedis\(|\.from_url\(|StrictRedis\(|\bSentinel\(")
    offenders = []
    for path in sorted([*(ROOT / "workers").rglob("*.py"), *(ROOT / "producer").rglob("*.py")]):
        if path == ROOT / "producer" / "redis_url.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if pattern.search(code) and "Store.from_url" not in code and (
                    "def from_url" not in code):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_the_fixture_fails_naming_the_package_when_a_binary_is_missing() -> None:
    from tests.sentinel import _binary

    with pytest.raises(pytest.fail.Exception) as caught:
        _binary("redis-sentinel-not-installed-here")
    assert "apt-get install redis-sentinel" in str(caught.value)
    assert _binary("redis-sentinel").endswith("redis-sentinel")
