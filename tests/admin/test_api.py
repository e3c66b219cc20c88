"""The admin API of SPEC 8, served by a real `recnotify admin` process on loopback,
against a real Redis and a SQLite store; test notifications go to a real receiver."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest
import requests

from tests.admin_server import AdminServer
from tests.helpers import ROOT, WorkerFactory
from tests.receiver import Receiver
from workers.http.signing import generate_secret


def dest_body(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "events": ["RECORDING_STARTED_EVENT"], "scope": "route:support",
            "url": url, "params": "ucid=%UCID%&aors=%CALLEDAORS%", **extra}


def test_api_refuses_calls_without_the_bearer_token(admin: AdminServer) -> None:
    assert admin.call("GET", "/api/destinations", auth=False).status_code == 401
    wrong = admin.call("GET", "/api/destinations", auth=False,
                       headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status_code == 401
    assert wrong.json()["errors"][0]["field"] == "authorization"
    assert admin.call("GET", "/api/destinations").json() == []


def test_page_docs_metrics_and_health_answer_without_the_token(admin: AdminServer) -> None:
    page = requests.get(admin.url + "/", timeout=10)
    assert page.status_code == 200 and "External Event Destinations" in page.text
    assert 'data-auth="token"' in page.text
    assert requests.get(admin.url + "/docs", timeout=10).status_code == 200
    spec = requests.get(admin.url + "/openapi.json", timeout=10).json()
    assert "/api/destinations/{name}/test" in spec["paths"]
    metrics = requests.get(admin.url + "/metrics", timeout=10)
    assert metrics.status_code == 200 and "recnotify_delivery_queue_depth" in metrics.text
    assert requests.get(admin.url + "/healthz", timeout=10).json()["status"] == "ok"


def test_create_get_update_delete_round_trip_with_secrets_masked(
        admin: AdminServer, workers: WorkerFactory) -> None:
    secret = generate_secret()
    body = dest_body("crm", "https://user:pa55@crm.example.com/hook", secret=secret,
                     headers={"X-Api-Key": {"value": "key-123456", "secret": True}})
    created = admin.call("POST", "/api/destinations", json=body)
    assert created.status_code == 201, created.text
    shown = admin.call("GET", "/api/destinations/crm").json()
    assert shown["secret"] == "********"
    assert shown["url"] == "https://********@crm.example.com/hook"
    assert shown["headers"] == {"X-Api-Key": {"value": "********", "secret": True}}
    assert secret not in created.text + str(shown) and "pa55" not in str(shown)
    # PUT the masked body back with one change: the stored secrets are kept
    shown["events"] = ["RECORDING_STARTED_EVENT", "RECORDING_ENDED_EVENT"]
    updated = admin.call("PUT", "/api/destinations/crm", json=shown)
    assert updated.status_code == 200, updated.text
    stored = workers.store.get("crm")
    assert stored.secret == secret and stored.url == "https://user:pa55@crm.example.com/hook"
    assert stored.events == ("RECORDING_STARTED_EVENT", "RECORDING_ENDED_EVENT")
    assert admin.call("DELETE", "/api/destinations/crm").status_code == 200
    assert admin.call("GET", "/api/destinations/crm").status_code == 404
    actions = [(a["action"], a["target"], a["actor"]) for a in workers.store.list_audit()]
    assert actions[:3] == [("delete", "crm", "token"), ("update", "crm", "token"),
                           ("create", "crm", "token")]
    assert all(a["remote_addr"] == "127.0.0.1" for a in workers.store.list_audit())


def test_existing_name_is_409_and_unknown_name_is_404(admin: AdminServer) -> None:
    body = dest_body("dup", "https://a.example.com/")
    assert admin.call("POST", "/api/destinations", json=body).status_code == 201
    again = admin.call("POST", "/api/destinations", json=body)
    assert again.status_code == 409
    assert again.json()["errors"][0]["field"] == "name"
    for method in ("GET", "PUT", "DELETE"):
        answer = admin.call(method, "/api/destinations/nope", json=body)
        assert answer.status_code == 404, method
        assert "'nope'" in answer.json()["errors"][0]["message"]


def test_refused_destination_lists_each_field_with_the_messages_of_import(
        admin: AdminServer) -> None:
    body = dest_body("bad", "ftp://files.example.com/x", params="size=%FILESIZE%",
                     timeout_s=99)
    answer = admin.call("POST", "/api/destinations", json=body)
    assert answer.status_code == 422
    errors = {e["field"]: e["message"] for e in answer.json()["errors"]}
    assert set(errors) == {"url", "params", "timeout_s"}
    assert errors["url"].startswith("destination 'bad': url: 'ftp://files.example.com/x'")
    assert "%FILESIZE%" in errors["params"] and "RECORDING_STARTED_EVENT" in errors["params"]
    assert "99" in errors["timeout_s"]


@pytest.mark.parametrize(("payload", "field"), [
    (b"{not json", ""),
    (b"[1, 2]", ""),
    (b'"just text"', ""),
])
def test_malformed_body_answers_422_in_the_errors_shape(
        admin: AdminServer, payload: bytes, field: str) -> None:
    answer = admin.call("POST", "/api/destinations", data=payload,
                        headers={"Content-Type": "application/json"})
    assert answer.status_code == 422
    errors = answer.json()["errors"]
    assert errors and errors[0]["field"] == field and errors[0]["message"]
    assert "detail" not in answer.json()


def test_test_notification_reaches_the_receiver_and_is_recorded(
        admin: AdminServer, receiver: Receiver) -> None:
    admin.call("POST", "/api/destinations", json=dest_body("hook", receiver.url("/hook")))
    answer = admin.call("POST", "/api/destinations/hook/test",
                        json={"type": "RECORDING_STARTED_EVENT"})
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["outcome"] == "delivered" and result["status"] == 200
    assert result["url"].startswith(receiver.url("/hook") + "?ucid=")
    got = receiver.wait_for(1)[0]
    assert got.query["aors"] == ["sip:called@example.com"]
    assert got.header("X-Recnotify-Event") == "RECORDING_STARTED_EVENT"
    attempts = admin.call("GET", "/api/attempts?destination=hook&limit=5").json()
    assert [(a["destination"], a["status"], a["outcome"]) for a in attempts] == [
        ("hook", 200, "delivered")]
    wrong_type = admin.call("POST", "/api/destinations/hook/test",
                            json={"type": "SEGMENT_ENDED_EVENT"})
    assert wrong_type.status_code == 422
    assert wrong_type.json()["errors"][0]["field"] == "type"


def test_parameters_are_the_spec_table_as_data(admin: AdminServer) -> None:
    params = admin.call("GET", "/api/parameters").json()
    assert set(params["SEGMENT_ENDED_EVENT"]) >= {"UCID", "FILESIZE", "DURATION", "EVENT"}
    assert "FILESIZE" not in params["RECORDING_STARTED_EVENT"]


@pytest.mark.slow
def test_dead_letters_are_listed_replayed_and_purged(
        admin: AdminServer, workers: WorkerFactory, receiver: Receiver) -> None:
    receiver.script("/down", [500, 500, 500, 500, 200])
    admin.call("POST", "/api/destinations", json=dest_body(
        "down", receiver.url("/down"), retry={"max_attempts": 2, "backoff_s": 0.05,
                                              "backoff_max_s": 0.1}))
    workers.start()
    pub = workers.publisher()
    event_ids = [pub.publish("RECORDING_STARTED_EVENT", route="support", params={"UCID": f"u{i}"})
                 for i in range(2)]
    assert len(workers.wait_dead_letters(2, timeout_s=60)) == 2
    letters = admin.call("GET", "/api/dead-letters").json()
    assert sorted(d["event_id"] for d in letters) == sorted(event_ids)
    assert all(len(d["attempts"]) == 2 and "HTTP 500" in d["reason"] for d in letters)
    trace = admin.call("GET", f"/api/events/{event_ids[0]}").json()
    assert trace["notifications"][0]["state"] == "dead"
    # replay one: it is delivered this time (the receiver now answers 200)
    one = admin.call("POST", f"/api/dead-letters/{letters[0]['id']}/replay")
    assert one.json() == {"replayed": 1}
    receiver.wait_for(5, lambda r: r.path == "/down", timeout_s=60)
    nid = letters[0]["notification_id"]
    deadline = time.monotonic() + 30
    while not any(a["outcome"] == "delivered" for a in admin.call(
            "GET", f"/api/attempts?notification_id={nid}").json()):
        assert time.monotonic() < deadline, "the replayed notification was not delivered"
        time.sleep(0.2)
    assert admin.call("POST", "/api/dead-letters/999999/replay").status_code == 404
    purged = admin.call("DELETE", "/api/dead-letters").json()
    assert purged == {"purged": 1}
    assert admin.call("GET", "/api/dead-letters").json() == []
    assert admin.call("POST", "/api/dead-letters/replay", json={}).json() == {"replayed": 0}
    actions = [a["action"] for a in workers.store.list_audit()]
    assert actions[:3] == ["replay", "purge", "replay"]


def test_admin_refuses_a_public_address_without_a_token(workers: WorkerFactory) -> None:
    env = workers.env(RECNOTIFY_ADMIN_ADDR="0.0.0.0:18999")
    env.pop("RECNOTIFY_ADMIN_TOKEN", None)
    done = subprocess.run([sys.executable, "-m", "workers", "admin"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "RECNOTIFY_ADMIN_TOKEN" in done.stderr and "0.0.0.0:18999" in done.stderr


def test_without_a_token_on_loopback_the_api_is_open_and_the_page_says_so(
        workers: WorkerFactory) -> None:
    server = AdminServer(workers, token=None)
    try:
        assert server.call("GET", "/api/destinations").status_code == 200
        assert 'data-auth="open"' in requests.get(server.url + "/", timeout=10).text
        assert "open" in server.log()
    finally:
        server.stop()


def test_admin_help_shows_an_example() -> None:
    done = subprocess.run([sys.executable, "-m", "workers", "admin", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "Example" in done.stdout and "recnotify admin --addr" in done.stdout


def test_patch_changes_only_the_fields_sent_and_put_still_replaces(
        admin: AdminServer, workers: WorkerFactory) -> None:
    secret = generate_secret()
    body = dest_body("m", "https://user:pw@m.example.com/hook", secret=secret,
                     headers={"X-Key": {"value": "k-1", "secret": True}, "X-Team": "ops"},
                     tls={"verify": False, "ca_bundle": "/ca.pem"}, deny_cidrs=["10.9.0.0/16"],
                     circuit={"failures": 3, "reset_s": 12}, rate_limit_per_s=50,
                     max_in_flight=5, ordered=True, on_dead_letter="hold")
    assert admin.call("POST", "/api/destinations", json=body).status_code == 201
    before = workers.store.get("m")

    # nested objects merge per key; the rest, secrets included, stay as stored
    answer = admin.call("PATCH", "/api/destinations/m",
                        json={"circuit": {"failures": 4}, "tls": {"verify": True},
                              "headers": {"X-Team": None, "X-New": "1"}})
    assert answer.status_code == 200, answer.text
    after = workers.store.get("m")
    assert after.circuit.failures == 4 and after.circuit.reset_s == 12.0
    assert after.tls.verify is True and after.tls.ca_bundle == "/ca.pem"
    assert [(h.name, h.value, h.secret) for h in after.headers] == [
        ("X-Key", "k-1", True), ("X-New", "1", False)]
    assert after.secret == secret and after.url == before.url
    assert (after.deny_cidrs, after.rate_limit_per_s, after.max_in_flight,
            after.on_dead_letter) == (("10.9.0.0/16",), 50.0, 5, "hold")
    audit = workers.store.list_audit()[0]
    assert audit["detail"] == "changed: circuit, headers, tls"

    # null puts a field back to its default; "secret": null clears the secret
    admin.call("PATCH", "/api/destinations/m", json={"rate_limit_per_s": None, "secret": None})
    cleared = workers.store.get("m")
    assert cleared.rate_limit_per_s is None and cleared.secret is None
    assert cleared.max_in_flight == 5

    # the name in the body must be the path's; refusals keep parse_destination's messages
    renamed = admin.call("PATCH", "/api/destinations/m", json={"name": "other"})
    assert renamed.status_code == 422 and "differs from the name" in renamed.text
    bad = admin.call("PATCH", "/api/destinations/m", json={"timeout_s": 99, "tls": {"x": 1}})
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"timeout_s", "tls.x"}
    assert admin.call("PATCH", "/api/destinations/nope", json={}).status_code == 404

    # PUT keeps its meaning: every field not sent goes back to its default
    put = admin.call("PUT", "/api/destinations/m", json=dest_body("m", "https://m.example.com/"))
    assert put.status_code == 200, put.text
    replaced = workers.store.get("m")
    assert replaced.circuit.failures == 5 and replaced.max_in_flight is None
    assert replaced.deny_cidrs == () and replaced.tls.verify is True and not replaced.headers
