"""Destination filters end to end: real Redis, real `recnotify worker` processes, a real
HTTP receiver, the real `recnotify destinations import` and admin API.

Absence is proven, not assumed: after the events that must not notify, a last
matching one is published; once it has arrived, everything published before it
has been matched (the consumer matches in stream order), so the receiver's
requests are compared exactly.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from producer import Publisher
from tests.admin_server import AdminServer
from tests.helpers import TEST_SECRET_KEY, WorkerFactory
from tests.receiver import Receiver
from workers.cli.main import main

pytestmark = pytest.mark.slow

#: What a user types (the README shows the same).
FILTERED = """destinations:
  - name: long-segments
    events: [SEGMENT_ENDED_EVENT]
    scope: account:acme
    url: {url_long}
    params: "segment=%SEGMENTID%&duration=%DURATION%"
    filter: {{DURATION: {{$gt: 10}}}}            # only segments over 10 s
  - name: support-aors
    events: [RECORDING_STARTED_EVENT, RECORDING_ENDED_EVENT]
    scope: global
    url: {url_aors}
    params: "ucid=%UCID%&event=%EVENT%"
    filter:                                     # only calls to certain AORs
      $or:
        - CALLEDAORS: {{$contains: "sip:100@"}}
        - CALLEDAORS: {{$startsWith: "sip:200@"}}
"""


def segment(pub: Publisher, seg: str, duration: str | int, account: str = "acme") -> None:
    pub.publish("SEGMENT_ENDED_EVENT", account=account,
                params={"UCID": "call-1", "SEGMENTID": seg, "DURATION": duration})


def recording(pub: Publisher, event_type: str, ucid: str, aors: list[str] | None) -> None:
    params: dict[str, str | int | list[str]] = {"UCID": ucid}
    if aors is not None:
        params["CALLEDAORS"] = aors
    pub.publish(event_type, route="support-line", params=params)


def test_receiver_gets_exactly_the_notifications_the_filters_select(
        workers: WorkerFactory, receiver: Receiver) -> None:
    # Given two filtered destinations, imported from the YAML a user writes
    workers.configure(FILTERED.format(url_long=receiver.url("/long"),
                                      url_aors=receiver.url("/aors")))
    workers.start()
    pub = workers.publisher()
    # When segments of every length and recordings to various AORs are published
    lengths: list[tuple[str, str | int]] = [("s5", "5"), ("s12", "12"), ("s10", "10"),
                                            ("s30", 30), ("sabc", "abc"), ("s10.5", "10.5")]
    for seg, duration in lengths:
        segment(pub, seg, duration)
    segment(pub, "other-account", "99", account="other")  # filter passes, scope does not
    recording(pub, "RECORDING_STARTED_EVENT", "to-100", ["sip:7@x", "sip:100@pbx.example"])
    recording(pub, "RECORDING_STARTED_EVENT", "to-1000", ["sip:1000@pbx.example"])
    recording(pub, "RECORDING_STARTED_EVENT", "no-aors", None)
    recording(pub, "RECORDING_ENDED_EVENT", "to-200", ["sip:200@b"])
    recording(pub, "RECORDING_PAUSED_EVENT", "paused-100", ["sip:100@pbx"])  # not its event
    # and last, one event per destination that matches
    segment(pub, "last", "600")
    recording(pub, "RECORDING_ENDED_EVENT", "last", ["sip:100@z"])
    receiver.wait_for(1, lambda r: r.path == "/long" and r.query.get("segment") == ["last"])
    receiver.wait_for(1, lambda r: r.path == "/aors" and r.query.get("ucid") == ["last"])
    time.sleep(0.5)
    # Then each destination got exactly its matching events, once each
    long_got = sorted(r.query["segment"][0] for r in receiver.received(lambda r: r.path == "/long"))
    assert long_got == sorted(["s12", "s30", "s10.5", "last"])
    aors_got = sorted((r.query["ucid"][0], r.query["event"][0])
                      for r in receiver.received(lambda r: r.path == "/aors"))
    assert aors_got == [("last", "RECORDING_ENDED_EVENT"), ("to-100", "RECORDING_STARTED_EVENT"),
                        ("to-200", "RECORDING_ENDED_EVENT")]
    assert len(receiver.received()) == 7


@pytest.fixture
def cli(workers: WorkerFactory, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name, value in workers.settings.to_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("RECNOTIFY_DATABASE_URL", raising=False)
    monkeypatch.setenv("RECNOTIFY_DATA_DIR", str(workers.settings.data_dir))
    monkeypatch.setenv("RECNOTIFY_SECRET_KEY", TEST_SECRET_KEY)
    workers.store  # noqa: B018 - the schema exists
    return CliRunner()


LACKING = ("destination 'started': filter: DURATION is not a parameter of "
           "RECORDING_STARTED_EVENT (valid: ACCOUNT, CALLEDAORS, CALLID, CALLINGAOR, ERROR, "
           "EVENT, EVENTID, REALM, RECORDINGID, RESULT, ROUTE, RSS, SESSIONID, STARTTIME, "
           "TIMESTAMP, UCID)")


def test_import_refuses_a_filter_on_a_parameter_the_event_lacks_in_one_line(
        cli: CliRunner, workers: WorkerFactory, tmp_path: Path) -> None:
    path = tmp_path / "d.yaml"
    path.write_text("destinations:\n  - name: started\n    events: [RECORDING_STARTED_EVENT]\n"
                    "    url: http://127.0.0.1:9/x\n    filter: {DURATION: {$gt: 10}}\n")
    result = cli.invoke(main, ["destinations", "import", str(path)])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert errors == [f"error: entry 1: {LACKING}"], result.output
    assert workers.store.list_destinations() == []
    # the same file with a parameter the event has is imported and exported as written
    path.write_text(path.read_text().replace("DURATION: {$gt: 10}",
                                             "CALLEDAORS: {$contains: 'sip:100@'}"))
    assert cli.invoke(main, ["destinations", "import", str(path)]).exit_code == 0
    listed = cli.invoke(main, ["destinations", "list"]).output
    assert "RECORDING_STARTED_EVENT (filtered)" in listed, listed
    shown = yaml.safe_load(cli.invoke(main, ["destinations", "show", "started"]).output)
    assert shown["filter"] == {"CALLEDAORS": {"$contains": "sip:100@"}}


def test_admin_api_refuses_keeps_and_changes_a_filter_that_workers_apply(
        workers: WorkerFactory, receiver: Receiver, admin: AdminServer) -> None:
    bad = admin.call("POST", "/api/destinations", json={
        "name": "started", "events": ["RECORDING_STARTED_EVENT"], "url": receiver.url("/s"),
        "filter": {"DURATION": {"$gt": 10}}})
    assert bad.status_code == 422
    assert bad.json() == {"errors": [{"field": "filter", "message": LACKING}]}
    typo = admin.call("POST", "/api/destinations", json={
        "name": "started", "events": ["RECORDING_STARTED_EVENT"], "url": receiver.url("/s"),
        "filter": {"UCID": {"$startswith": "a"}}})
    assert typo.status_code == 422 and "did you mean $startsWith?" in typo.text
    created = admin.call("POST", "/api/destinations", json={
        "name": "started", "events": ["RECORDING_STARTED_EVENT"], "url": receiver.url("/s"),
        "params": "ucid=%UCID%", "filter": {"UCID": {"$startsWith": "keep-"}}})
    assert created.status_code == 201, created.text
    # a PATCH of another field keeps the filter
    patched = admin.call("PATCH", "/api/destinations/started", json={"timeout_s": 5})
    assert patched.status_code == 200, patched.text
    assert patched.json()["filter"] == {"UCID": {"$startsWith": "keep-"}}
    assert admin.call("GET", "/api/destinations/started").json()["filter"] == {
        "UCID": {"$startsWith": "keep-"}}
    refused = admin.call("PATCH", "/api/destinations/started",
                         json={"filter": {"UCID": {"$gt": [1]}}})
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "filter"
    workers.start()
    pub = workers.publisher()
    pub.publish("RECORDING_STARTED_EVENT", params={"UCID": "drop-1"})
    pub.publish("RECORDING_STARTED_EVENT", params={"UCID": "keep-1"})
    receiver.wait_for(1)
    # a PATCH of the filter reaches the running workers (SPEC 4: within 2 seconds)
    changed = admin.call("PATCH", "/api/destinations/started",
                         json={"filter": {"UCID": {"$startsWith": None, "$in": ["drop-2"]}}})
    assert changed.status_code == 200, changed.text
    assert changed.json()["filter"] == {"UCID": {"$in": ["drop-2"]}}
    time.sleep(2.5)
    pub.publish("RECORDING_STARTED_EVENT", params={"UCID": "keep-2"})
    pub.publish("RECORDING_STARTED_EVENT", params={"UCID": "drop-2"})
    receiver.wait_for(2)
    time.sleep(0.5)
    assert sorted(r.query["ucid"][0] for r in receiver.received()) == ["drop-2", "keep-1"]
    # and null removes it
    cleared = admin.call("PATCH", "/api/destinations/started", json={"filter": None})
    assert cleared.status_code == 200 and "filter" not in cleared.json()


def test_a_test_notification_says_whether_the_sample_event_passes_the_filter(
        workers: WorkerFactory, receiver: Receiver, admin: AdminServer) -> None:
    for name, duration in (("short", 1000), ("long", 60)):
        created = admin.call("POST", "/api/destinations", json={
            "name": name, "events": ["SEGMENT_ENDED_EVENT"], "url": receiver.url(f"/{name}"),
            "params": "d=%DURATION%", "filter": {"DURATION": {"$gt": duration}}})
        assert created.status_code == 201, created.text
    # the sample segment lasts 120 s: over 60, not over 1000; both are sent (it is a test)
    short = admin.call("POST", "/api/destinations/short/test", json={}).json()
    long = admin.call("POST", "/api/destinations/long/test", json={}).json()
    assert (short["filter_passes"], long["filter_passes"]) == (False, True)
    assert (short["outcome"], long["outcome"]) == ("delivered", "delivered")
    assert sorted(r.path for r in receiver.received()) == ["/long", "/short"]
