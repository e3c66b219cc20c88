"""Expiry end to end (SPEC 4 ``expire_after_s``): real worker processes, real Redis, a
real receiver that refuses. A notification not delivered within its limit (counted from
its event's ``occurred_at``) ends as a dead letter ``expired after N s`` at about N s,
whether it was retrying, parked behind an open circuit, or the head of an ordered
recording (which then goes on or holds by ``on_dead_letter``); /metrics counts it."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
import requests

from tests.admin_server import AdminServer
from tests.browser import browser
from tests.helpers import WorkerFactory
from tests.ops.test_metrics import promtool_check, scrape, value
from tests.receiver import Received, Receiver

pytestmark = pytest.mark.slow
__all__ = ["browser"]  # the fixture, re-exported for pytest

STARTED, ENDED = "RECORDING_STARTED_EVENT", "RECORDING_ENDED_EVENT"
EXPIRE_S = 3.0
#: How late after its expiry a dead letter may be written: a 0.5 s sweep or schedule
#: mover, a countdown that ends just after the expiry, a busy 2-core machine.
LATE_S = 2.0


class Refusing(Receiver):
    """A receiver that answers 503 to every request ``refuse`` selects (others: 200)."""

    def __init__(self, refuse: Callable[[Received], bool]) -> None:
        super().__init__()
        self.refuse = refuse

    def _record(self, request: Received) -> tuple[int, dict[str, str]]:
        if not self.refuse(request):
            return super()._record(request)
        with self.cond:
            request.status = 503
            self.requests.append(request)
            self.cond.notify_all()
        return 503, {}


@pytest.fixture
def refuse_started() -> Iterator[Refusing]:
    with Refusing(lambda r: r.query.get("e") == [STARTED]) as receiver:
        yield receiver


def occurred_s(letter: dict[str, Any]) -> float:
    return datetime.fromisoformat(letter["event"]["occurred_at"].replace("Z", "+00:00")
                                  ).timestamp()


def assert_expired_on_time(letter: dict[str, Any], limit_s: float = EXPIRE_S) -> None:
    assert letter["reason"] == f"expired after {limit_s:g} s", letter["reason"]
    took_s = letter["created_at"] - occurred_s(letter)
    assert limit_s <= took_s <= limit_s + LATE_S, f"dead after {took_s:.2f} s"


def test_a_refused_notification_is_dead_at_its_expiry_not_after_its_retry_span_and_counted(
        workers: WorkerFactory, receiver: Receiver, admin: AdminServer) -> None:
    # Given a destination whose receiver answers 503, a retry policy that would go on for
    # about two minutes (8 attempts, 1 s doubling), and expire_after_s: 3
    receiver.script("/down", [503])
    workers.configure(f"""destinations:
  - name: down
    events: all
    url: {receiver.url("/down")}
    expire_after_s: {EXPIRE_S:g}
    circuit: {{failures: 1000}}
""")
    workers.start()
    # When an event is published
    event_id = workers.publisher().publish(STARTED, params={"UCID": "exp-1"})
    # Then it is a dead letter "expired after 3 s" about 3 s after the event occurred
    (letter,) = workers.wait_dead_letters(1, timeout_s=15)
    assert letter["event_id"] == event_id and letter["destination"] == "down"
    assert_expired_on_time(letter)
    # and the receiver saw its attempts only before the expiry, none after
    got = receiver.received()
    assert 2 <= len(got) <= 4, [r.at for r in got]
    assert all(r.status == 503 for r in got)
    assert max(r.at for r in got) <= occurred_s(letter) + EXPIRE_S + 0.2
    assert len(letter["attempts"]) == len(got) + 1  # the attempts and the expiry itself
    assert letter["attempts"][-1]["error"] == f"expired after {EXPIRE_S:g} s"
    time.sleep(1.5)
    assert len(receiver.received()) == len(got), "nothing is sent once it expired"
    # And /metrics counts it as a dead letter of reason "expired"; promtool accepts the page
    samples = scrape(admin)
    assert value(samples, "recnotify_dead_letters_total", destination="down",
                 reason="expired") == 1
    assert value(samples, "recnotify_dead_letters_total", destination="down",
                 reason="exhausted") == 0
    assert value(samples, "recnotify_notifications_total", destination="down",
                 outcome="dead") == 1
    checked = promtool_check(requests.get(admin.url + "/metrics", timeout=10).text)
    assert checked.returncode == 0 and checked.stdout + checked.stderr == "", checked


def ordered_config(receiver: Receiver, on_dead_letter: str) -> str:
    return f"""destinations:
  - name: ordered
    events: [{STARTED}, {ENDED}]
    url: {receiver.url("/ord")}
    params: "e=%EVENT%&ucid=%UCID%"
    ordered: true
    on_dead_letter: {on_dead_letter}
    expire_after_s: {{{STARTED}: {EXPIRE_S:g}}}
    retry: {{max_attempts: 8, backoff_s: 0.5, backoff_max_s: 60}}
    circuit: {{failures: 1000}}
"""


def test_an_expired_head_lets_its_recording_go_on_with_continue(
        workers: WorkerFactory, refuse_started: Refusing) -> None:
    # Given an ordered destination (continue) that refuses RECORDING_STARTED, which
    # expires after 3 s, while RECORDING_ENDED never expires
    receiver = refuse_started
    workers.configure(ordered_config(receiver, "continue"))
    workers.start()
    # When a recording's STARTED and ENDED are published
    pub = workers.publisher()
    pub.publish(STARTED, params={"UCID": "ord-c"})
    pub.publish(ENDED, params={"UCID": "ord-c"})
    # Then STARTED is a dead letter at its expiry, and ENDED is delivered after it
    (letter,) = workers.wait_dead_letters(1, timeout_s=15)
    assert letter["event"]["type"] == STARTED
    assert_expired_on_time(letter)
    (ended,) = receiver.wait_for(1, lambda r: r.status == 200, timeout_s=10)
    assert ended.query["e"] == [ENDED] and ended.header("X-Recnotify-Sequence") == "2"
    started = receiver.received(lambda r: r.query["e"] == [STARTED])
    assert started and all(r.header("X-Recnotify-Sequence") == "1" for r in started)
    assert ended.at > max(r.at for r in started), "in order: ENDED only after STARTED ended"
    assert ended.at >= letter["created_at"] - 0.05


def test_an_expired_head_holds_its_recording_with_hold(
        workers: WorkerFactory, refuse_started: Refusing) -> None:
    from workers.ops.replay import purge_dead_letters
    from workers.taskqueue.app import create_app
    from workers.taskqueue.service import make_enqueue

    # Given the same destination with on_dead_letter: hold
    receiver = refuse_started
    workers.configure(ordered_config(receiver, "hold"))
    workers.start()
    pub = workers.publisher()
    pub.publish(STARTED, params={"UCID": "ord-h"})
    pub.publish(ENDED, params={"UCID": "ord-h"})
    # Then STARTED is a dead letter at its expiry, and ENDED waits behind it
    (letter,) = workers.wait_dead_letters(1, timeout_s=15)
    assert_expired_on_time(letter)
    time.sleep(2.0)
    assert receiver.received(lambda r: r.query["e"] == [ENDED]) == [], "held"
    # And purging the dead letter lets ENDED go (it was held, not lost)
    assert purge_dead_letters(workers.settings, workers.store, workers.redis,
                              make_enqueue(create_app(workers.settings))) == 1
    (ended,) = receiver.wait_for(1, lambda r: r.status == 200, timeout_s=10)
    assert ended.query["e"] == [ENDED] and ended.header("X-Recnotify-Sequence") == "2"


def test_a_parked_notification_expires_while_the_circuit_stays_open(
        workers: WorkerFactory, receiver: Receiver) -> None:
    # Given a destination whose circuit opens at the first failure and stays open for 60 s
    # (no probe during the test), with expire_after_s: 3
    receiver.script("/parked", [503])
    workers.configure(f"""destinations:
  - name: parked
    events: all
    url: {receiver.url("/parked")}
    expire_after_s: {EXPIRE_S:g}
    circuit: {{failures: 1, reset_s: 60}}
    retry: {{max_attempts: 8, backoff_s: 0.2, backoff_max_s: 60}}
""")
    workers.start()
    pub = workers.publisher()
    # When a first event fails once (the circuit opens; its retry finds it open and parks)
    first = pub.publish(STARTED, params={"UCID": "park-1"})
    receiver.wait_for(1, timeout_s=10)
    client = workers.redis
    parked_key = workers.settings.keys.parked("parked")
    deadline = time.monotonic() + EXPIRE_S
    while not client.zcard(parked_key):
        assert time.monotonic() < deadline, "the retry did not park"
        time.sleep(0.05)
    # and a second event arrives while it is open (parked at dispatch, never sent)
    second = pub.publish(STARTED, params={"UCID": "park-2"})
    # Then both are buried by the sweep at their expiry, with the expiry's reason
    letters = workers.wait_dead_letters(2, timeout_s=15)
    assert sorted(d["event_id"] for d in letters) == sorted([first, second])
    for letter in letters:
        assert_expired_on_time(letter)
    assert len(receiver.received()) == 1, "the open circuit sent nothing more"
    assert client.zcard(parked_key) == 0
    assert client.zcard(workers.settings.keys.parked_expiry("parked")) == 0
    counts = client.hgetall(workers.settings.keys.metric("dead_letters"))
    assert counts == {b"parked|expired": b"2"}


def test_an_expired_head_released_late_is_not_sent_either(
        workers: WorkerFactory, refuse_started: Refusing) -> None:
    # Given the continue destination where ENDED expires after 2 s: it is held behind
    # STARTED (refused until its expiry at 3 s), so its own limit passes while held
    receiver = refuse_started
    workers.configure(ordered_config(receiver, "continue").replace(
        f"{{{STARTED}: {EXPIRE_S:g}}}", f"{{{STARTED}: {EXPIRE_S:g}, {ENDED}: 2}}"))
    workers.start()
    pub = workers.publisher()
    pub.publish(STARTED, params={"UCID": "ord-late"})
    pub.publish(ENDED, params={"UCID": "ord-late"})
    # Then both are dead letters: STARTED at its expiry, ENDED as soon as it is released
    letters = workers.wait_dead_letters(2, timeout_s=15)
    by_type = {d["event"]["type"]: d for d in letters}
    assert_expired_on_time(by_type[STARTED])
    ended = by_type[ENDED]
    assert ended["reason"] == "expired after 2 s"
    assert ended["created_at"] >= by_type[STARTED]["created_at"] - 0.05
    assert ended["attempts"][-1]["error"] == "expired after 2 s"
    # and the receiver never saw ENDED
    assert receiver.received(lambda r: r.query["e"] == [ENDED]) == []


def test_a_replayed_expired_notification_gets_a_new_clock_and_is_delivered(
        workers: WorkerFactory, receiver: Receiver) -> None:
    from workers.ops.replay import replay_dead_letters
    from workers.taskqueue.app import create_app
    from workers.taskqueue.service import make_enqueue

    # Given a notification that expired while its receiver refused
    receiver.script("/back", [503])
    workers.configure(f"""destinations:
  - name: back
    events: all
    url: {receiver.url("/back")}
    expire_after_s: {EXPIRE_S:g}
    circuit: {{failures: 1000}}
""")
    workers.start()
    workers.publisher().publish(STARTED, params={"UCID": "replayed"})
    (letter,) = workers.wait_dead_letters(1, timeout_s=15)
    assert_expired_on_time(letter)
    # When the receiver is back and an operator replays it (its event is older than 3 s)
    receiver.script("/back", [200])
    assert replay_dead_letters(workers.settings, workers.store, workers.redis,
                               make_enqueue(create_app(workers.settings))) == 1
    # Then it is delivered: the replay restarted its expiry clock
    (delivered,) = receiver.wait_for(1, lambda r: r.status == 200, timeout_s=10)
    assert delivered.header("webhook-id") == letter["notification_id"]
    assert workers.store.list_dead_letters() == []


def test_the_admin_api_keeps_merges_and_shows_the_field(admin: AdminServer) -> None:
    body = {"name": "api", "events": [STARTED, ENDED], "url": "https://10.0.0.5/x",
            "expire_after_s": {STARTED: 120}}
    created = admin.call("POST", "/api/destinations", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["expire_after_s"] == {STARTED: 120}
    kept = admin.call("PATCH", "/api/destinations/api", json={"timeout_s": 5})
    assert kept.status_code == 200, kept.text
    assert kept.json()["expire_after_s"] == {STARTED: 120}
    merged = admin.call("PATCH", "/api/destinations/api",
                        json={"expire_after_s": {ENDED: 30}})
    assert merged.json()["expire_after_s"] == {STARTED: 120, ENDED: 30}
    refused = admin.call("PATCH", "/api/destinations/api",
                         json={"expire_after_s": {STARTED: -5}})
    assert refused.status_code == 422
    (error,) = refused.json()["errors"]
    assert error["field"] == f"expire_after_s.{STARTED}" and "-5" in error["message"]
    face = admin.call("POST", "/api/destinations", json={
        "name": "face", "preset": "face", "url": "https://10.0.0.5:8443/Face/eventNotify"})
    assert face.json()["expire_after_s"] == {STARTED: 120}


def test_an_ordered_head_waiting_on_an_open_circuit_expires_on_time(
        workers: WorkerFactory, receiver: Receiver) -> None:
    # Given an ordered destination whose circuit opens at the first failure for 60 s: its
    # head does not park, it waits as the recording's in-flight head (the circuit's wait)
    receiver.script("/ord-open", [503])
    workers.configure(f"""destinations:
  - name: ordered-open
    events: [{STARTED}, {ENDED}]
    url: {receiver.url("/ord-open")}
    ordered: true
    expire_after_s: {{{STARTED}: {EXPIRE_S:g}}}
    circuit: {{failures: 1, reset_s: 60}}
    retry: {{max_attempts: 8, backoff_s: 0.2, backoff_max_s: 60}}
""")
    workers.start()
    workers.publisher().publish(STARTED, params={"UCID": "ord-open"})
    # Then its wait is cut at the expiry: dead at ~3 s, not after the 60 s circuit wait
    (letter,) = workers.wait_dead_letters(1, timeout_s=15)
    assert_expired_on_time(letter)
    assert len(receiver.received()) == 1, "one attempt; then the open circuit held it"


@pytest.fixture
def page(browser: Any, workers: WorkerFactory) -> Iterator[tuple[Any, AdminServer]]:
    from tests.browser import admin_tab

    with admin_tab(browser, workers, width=1280, height=1400) as opened:
        yield opened


def test_the_settings_page_shows_edits_and_refuses_the_expiry(
        page: tuple[Any, AdminServer], workers: WorkerFactory, receiver: Receiver) -> None:
    from playwright.sync_api import expect

    from tests.admin_server import TOKEN

    tab, server = page
    workers.configure(f"destinations:\n  - name: face\n    preset: face\n"
                      f"    url: {receiver.url('/Face')}\n")
    tab.goto(server.url + "/")
    tab.fill("#token", TOKEN)
    tab.click("#login-btn")
    row = tab.locator("#dest-table tr.dest-row", has_text="face")
    row.get_by_role("button", name="Edit").click()
    # The face preset's default shows in the form
    expect(tab.locator("#f-expire")).to_have_value(f"{STARTED}=120")
    # A value that is no number is refused beside the field, with the server's message
    tab.fill("#f-expire", f"{STARTED}=soon")
    tab.click("#f-save")
    expect(tab.locator('#dest-form [data-error-for="expire_after_s"]')).to_contain_text(
        f"expire_after_s: '{STARTED}=soon' is not a number of seconds")
    # A map per type is saved as such
    tab.fill("#f-expire", f"{STARTED}=60, {ENDED}=600")
    tab.click("#f-save")
    expect(tab.locator("#editor")).to_be_hidden()
    assert workers.store.get("face").expire_after_s == {STARTED: 60.0, ENDED: 600.0}
    # Editing something else keeps it
    row.get_by_role("button", name="Edit").click()
    expect(tab.locator("#f-expire")).to_have_value(re.compile("=600|=60"))
    shown = tab.locator("#f-expire").input_value()
    assert set(shown.split(", ")) == {f"{STARTED}=60", f"{ENDED}=600"}, shown
    tab.select_option("#f-method", "POST")
    tab.click("#f-save")
    expect(tab.locator("#editor")).to_be_hidden()
    stored = workers.store.get("face")
    assert stored.method == "POST" and stored.expire_after_s == {STARTED: 60.0, ENDED: 600.0}
