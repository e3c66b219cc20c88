"""Backfill (SPEC 7 ``recnotify replay``), from the receiver's side: real Redis, real
``recnotify worker`` processes, a real receiver, a destination made after the events."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict

import pytest
from click.testing import CliRunner
from playwright.sync_api import Browser, expect

from tests.admin_server import AdminServer
from tests.browser import admin_tab, browser, sign_in
from tests.helpers import WorkerFactory
from tests.receiver import Receiver
from workers.cli.main import main
from workers.http.request import notification_id
from workers.ops.backfill import Backfill, read_job
from workers.ops.selection import Selection
from workers.taskqueue.app import create_app
from workers.taskqueue.enqueue import make_enqueue

__all__ = ["browser"]  # the fixture, re-exported for pytest
pytestmark = pytest.mark.slow

TYPES = ["RECORDING_STARTED_EVENT", "SEGMENT_STARTED_EVENT", "SEGMENT_ENDED_EVENT",
         "RECORDING_ENDED_EVENT"]


def publish_history(workers: WorkerFactory, calls: int) -> dict[str, list[str]]:
    """``calls`` recordings of acme, one of globex; event ids per account, in order."""
    pub = workers.publisher()
    ids: dict[str, list[str]] = defaultdict(list)
    for n in range(calls):
        for account in ("acme", "globex") if n == 0 else ("acme",):
            for event_type in TYPES:
                ids[account].append(pub.publish(event_type, account=account,
                                                params={"UCID": f"{n}-{account}@10.0.0.1"}))
    return ids


def wait_consumed(workers: WorkerFactory, count: int) -> None:
    """The workers have read every published event (they matched nothing then)."""
    deadline = time.monotonic() + 30
    key = workers.settings.keys.metric("dispatched")
    while int(workers.redis.hget(key, "events|total") or 0) < count:
        assert time.monotonic() < deadline, "the workers did not consume the history"
        time.sleep(0.1)


def add_destination(workers: WorkerFactory, receiver: Receiver, name: str, **extra: str
                    ) -> None:
    lines = "".join(f"    {key}: {value}\n" for key, value in extra.items())
    workers.configure(f"""destinations:
  - name: {name}
    preset: json
    scope: account:acme
    url: {receiver.url("/" + name)}
{lines}""")


def backfill(workers: WorkerFactory, selection: Selection, **kwargs: float) -> Backfill:
    dest = workers.store.get(selection.destination)
    return Backfill(workers.settings, workers.redis, dest, selection,
                    make_enqueue(create_app(workers.settings)), store=workers.store,
                    **kwargs)  # type: ignore[arg-type]


def test_a_destination_added_after_the_events_receives_exactly_its_history(
        workers: WorkerFactory, receiver: Receiver) -> None:
    workers.start()
    ids = publish_history(workers, calls=5)
    wait_consumed(workers, 24)
    add_destination(workers, receiver, "crm")
    # dry run: the counts per type, nothing sent
    dry = CliRunner().invoke(main, ["replay", "--destination", "crm", "--dry-run"],
                             env=workers.env(), catch_exceptions=False)
    assert dry.exit_code == 0, dry.output
    assert dry.output.splitlines() == [
        "would send 20 notification(s) for 20 event(s) to crm (looked at 24 retained event(s))",
        *(f"  {t}: 5" for t in sorted(TYPES))]
    time.sleep(1)
    assert receiver.received() == []
    # the real run: every acme event once, under its usual notification id; no globex
    done = CliRunner().invoke(main, ["replay", "--destination", "crm"], env=workers.env(),
                              catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert "done: 20 notification(s) for 20 event(s) to crm" in done.output
    got = receiver.wait_for(20)
    assert sorted(r.header("webhook-id") or "" for r in got) == sorted(
        notification_id(e, "crm") for e in ids["acme"])
    assert {r.json()["account"] for r in got} == {"acme"}


def test_filters_narrow_the_backfill_and_a_second_run_sends_the_same_ids_again(
        workers: WorkerFactory, receiver: Receiver) -> None:
    workers.start()
    publish_history(workers, calls=3)
    (last_id, _), = workers.redis.xrevrange(workers.settings.keys.events, count=1)
    middle = (int(last_id.split(b"-")[0]) + 1) / 1000  # just after the first history
    time.sleep(0.01)
    later = publish_history(workers, calls=2)
    wait_consumed(workers, 16 + 12)
    add_destination(workers, receiver, "crm")
    # only the later window, only RECORDING_STARTED_EVENT, only call 1
    selection = Selection("crm", since_s=middle, type="RECORDING_STARTED_EVENT",
                          ucid="1-acme@10.0.0.1")
    result = backfill(workers, selection).run()
    assert (result["state"], result["notifications"]) == ("done", 1)
    (first,) = receiver.wait_for(1)
    expected = notification_id(later["acme"][4], "crm")  # call 1's RECORDING_STARTED_EVENT
    assert first.header("webhook-id") == expected
    # the same selection again, once the first is delivered: the same id again
    deadline = time.monotonic() + 20
    while workers.redis.hget(workers.settings.keys.notification(expected), "state") != \
            b"delivered":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert backfill(workers, selection).run()["notifications"] == 1
    second = receiver.wait_for(2)
    assert [r.header("webhook-id") for r in second] == [expected, expected]


def test_an_interrupted_backfill_resumes_where_it_stopped_without_sending_twice(
        workers: WorkerFactory, receiver: Receiver) -> None:
    workers.start()
    ids = publish_history(workers, calls=10)
    wait_consumed(workers, 44)
    add_destination(workers, receiver, "crm", max_in_flight="2")
    stop = threading.Event()
    seen: list[int] = []

    def progress(entries: int) -> None:
        seen.append(entries)
        if len(seen) == 3:
            stop.set()  # as Ctrl-C does: the run stops after this batch

    job = backfill(workers, Selection("crm"))
    assert job.window == 4 and job.batch == 2  # max_in_flight 2: small, paced batches
    first = job.run(progress=progress, stop=stop)
    assert first["state"] == "interrupted" and 0 < first["notifications"] < 40
    stored = read_job(workers.redis, workers.settings, job.job_id)
    assert stored is not None and stored["cursor"] == first["cursor"]
    final = backfill(workers, Selection("crm")).run()
    assert (final["state"], final["notifications"]) == ("done", 40)
    got = receiver.wait_for(40, timeout_s=60)
    time.sleep(1)
    counts = Counter(r.header("webhook-id") for r in receiver.received())
    assert set(counts) == {notification_id(e, "crm") for e in ids["acme"]}
    assert max(counts.values()) == 1, "a resumed backfill sent a notification twice"
    assert len(got) == 40


def test_a_backfill_is_wanted_now_so_an_old_event_is_not_expired_on_arrival(
        workers: WorkerFactory, receiver: Receiver) -> None:
    workers.start()
    ids = publish_history(workers, calls=1)
    wait_consumed(workers, 8)
    time.sleep(2.2)  # older than the destination's expiry below
    add_destination(workers, receiver, "crm", expire_after_s="2")
    assert backfill(workers, Selection("crm")).run()["notifications"] == 4
    got = receiver.wait_for(4)
    assert sorted(r.header("webhook-id") or "" for r in got) == sorted(
        notification_id(e, "crm") for e in ids["acme"])
    assert workers.store.list_dead_letters() == []


def test_an_ordered_destination_gets_each_recordings_history_in_order(
        workers: WorkerFactory, receiver: Receiver) -> None:
    workers.start()
    publish_history(workers, calls=8)
    wait_consumed(workers, 36)
    add_destination(workers, receiver, "face", ordered="true")
    assert backfill(workers, Selection("face")).run()["notifications"] == 32
    got = receiver.wait_for(32, timeout_s=60)
    per_call: dict[str, list[str]] = defaultdict(list)
    for r in got:
        per_call[r.json()["params"]["UCID"]].append(r.json()["type"])
    assert len(per_call) == 8
    assert all(types == TYPES for types in per_call.values()), per_call


def test_the_admin_api_runs_a_backfill_that_can_be_polled(
        workers: WorkerFactory, receiver: Receiver, admin: AdminServer) -> None:
    workers.start()
    ids = publish_history(workers, calls=2)
    wait_consumed(workers, 12)
    add_destination(workers, receiver, "crm")
    dry = admin.call("POST", "/api/replays", json={"destination": "crm", "dry_run": True})
    assert dry.status_code == 200, dry.text
    assert dry.json()["notifications"] == 8 and dry.json()["per_type"] == {t: 2 for t in TYPES}
    started = admin.call("POST", "/api/replays", json={"destination": "crm", "since": "1h"})
    assert started.status_code == 202, started.text
    url = started.json()["url"]
    deadline = time.monotonic() + 30
    while (status := admin.call("GET", url).json())["state"] != "done":
        assert time.monotonic() < deadline, status
        time.sleep(0.2)
    assert status["notifications"] == 8
    assert sorted(r.header("webhook-id") or "" for r in receiver.wait_for(8)) == sorted(
        notification_id(e, "crm") for e in ids["acme"])
    refused = admin.call("POST", "/api/replays", json={"destination": "crm", "since": "soon"})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "since"
    assert "neither an ISO 8601 time" in refused.json()["errors"][0]["message"]
    missing = admin.call("POST", "/api/replays", json={"destination": "nobody"})
    assert missing.status_code == 404
    assert admin.call("GET", "/api/replays/bf_nothing").status_code == 404


def test_the_replay_command_refuses_in_one_line(workers: WorkerFactory) -> None:
    workers.store  # noqa: B018 - the schema
    for args, message in (
        (["--destination", "nobody"], "error: no destination named 'nobody'"),
        (["--destination", "x", "--since", "soon"], "error: --since 'soon' is neither"),
    ):
        result = CliRunner().invoke(main, ["replay", *args], env=workers.env())
        assert result.exit_code == 1, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), result.output


def test_the_page_counts_then_replays_history_to_a_new_destination(
        workers: WorkerFactory, receiver: Receiver, browser: Browser) -> None:
    workers.start()
    ids = publish_history(workers, calls=2)
    wait_consumed(workers, 12)
    add_destination(workers, receiver, "crm")
    with admin_tab(browser, workers) as (tab, server):
        sign_in(tab, server)
        tab.select_option("#r-dest", "crm")
        tab.fill("#r-since", "1h")
        tab.select_option("#r-type", "RECORDING_STARTED_EVENT")
        tab.click("#r-dry")
        expect(tab.locator("#r-result")).to_contain_text(
            "Would send 2 notification(s) for 2 event(s) (RECORDING_STARTED_EVENT: 2)")
        assert receiver.received() == []
        tab.click("#r-go")
        expect(tab.locator("#r-result")).to_contain_text(": done, 2 notification(s)")
        tab.fill("#r-since", "yesterday-ish")
        tab.click("#r-dry")
        expect(tab.locator("#r-error")).to_contain_text("is neither an ISO 8601 time")
    got = receiver.wait_for(2)
    started = set(ids["acme"][0::4])  # each call's first event is its start
    assert {r.header("webhook-id") for r in got} == {notification_id(e, "crm") for e in started}


def test_history_is_backfilled_from_the_database_after_redis_forgot_it_and_the_stream_was_trimmed(
        workers: WorkerFactory, receiver: Receiver) -> None:
    workers.start(RECNOTIFY_DEDUPE_WINDOW_S="1")
    ids = publish_history(workers, calls=2)
    wait_consumed(workers, 12)
    keys = workers.settings.keys
    # the stream keeps no consumed entry, and the event copies are gone with their window
    workers.redis.xtrim(keys.events, maxlen=0)
    deadline = time.monotonic() + 15
    while any(workers.redis.exists(keys.event(e)) for e in ids["acme"]):
        assert time.monotonic() < deadline, "the event copies outlived the dedupe window"
        time.sleep(0.2)
    assert workers.redis.xlen(keys.events) == 0
    add_destination(workers, receiver, "crm")
    result = backfill(workers, Selection("crm")).run()
    assert (result["state"], result["notifications"]) == ("done", 8)
    got = receiver.wait_for(8)
    assert sorted(r.header("webhook-id") or "" for r in got) == sorted(
        notification_id(e, "crm") for e in ids["acme"])
    assert sorted(r.json()["id"] for r in got) == sorted(ids["acme"])
