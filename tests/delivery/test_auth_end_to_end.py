"""Destinations that need a token, end to end: real `recnotify worker` processes, a real
Redis, and real token servers (tests/token_servers.py: a FACE-like login and an OAuth2
token endpoint, each refusing notifications without a live token)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.admin_server import AdminServer
from tests.helpers import ROOT, WorkerFactory, fast_retry
from tests.system.test_security import celery_events as celery_events  # the fixture
from tests.system.test_security import redis_dump, unwrap
from tests.token_servers import TokenServer
from workers.http.request import notification_id

pytestmark = pytest.mark.slow

PASSWORD = "pa55-Word-9f3c"
CLIENT_SECRET = "cl1ent-s3cret-77aa"


@pytest.fixture
def face() -> Iterator[TokenServer]:
    with TokenServer("face", password=PASSWORD) as server:
        yield server


@pytest.fixture
def idp() -> Iterator[TokenServer]:
    with TokenServer("oauth2", user="recnotify", password=CLIENT_SECRET) as server:
        yield server


def face_dest(face: TokenServer, name: str = "face-auth", password: str = PASSWORD,
              **auth: Any) -> str:
    spec = {"type": "login_form", "login_url": face.url("/Face/login"),
            "username": face.user, "password": password, **auth}
    return (f"destinations:\n  - name: {name}\n    preset: face\n"
            f"    url: {face.url('/Face/eventNotify')}\n"
            f"    retry: {json.dumps(fast_retry())}\n    auth: {json.dumps(spec)}\n")


def oauth_dest(url: str, *, name: str = "oauth", **extra: Any) -> str:
    spec = {"type": "oauth2_client_credentials", "token_url": url, "client_id": "recnotify",
            "client_secret": CLIENT_SECRET, "scope": "notify"}
    lines = [f"  - name: {name}", "    events: all", "    method: POST",
             f"    url: {url.rsplit('/', 1)[0]}/hook", f"    auth: {json.dumps(spec)}"]
    lines += [f"    {k}: {json.dumps(v)}" for k, v in extra.items()]
    return "destinations:\n" + "\n".join(lines) + "\n"


def publish(workers: WorkerFactory, count: int, ucid: str = "u") -> list[str]:
    pub = workers.publisher()
    return [pub.publish("RECORDING_STARTED_EVENT", params={"UCID": f"{ucid}{i}",
                                                         "CALLEDAORS": ["sip:1@h"]})
            for i in range(count)]


def attempts_of(workers: WorkerFactory, event_id: str, dest: str) -> int:
    value = workers.redis.hget(workers.settings.keys.notification(
        notification_id(event_id, dest)), "attempts")
    return int(value or 0)


def test_face_token_is_fetched_once_reused_and_never_stored_or_logged(
    workers: WorkerFactory, face: TokenServer, celery_events: list[bytes]
) -> None:
    # Given a FACE destination whose login answers a one-hour token
    workers.configure(face_dest(face, expiration_s=3600))
    workers.start(concurrency=8)
    # When 30 recordings start
    event_ids = publish(workers, 30)
    got = face.wait_for(30)
    time.sleep(0.5)
    # Then one login served all 30 notifications, each with the token
    assert len(face.logins) == 1
    assert face.logins[0].form == {"userEmail": face.user, "password": PASSWORD,
                                   "expirationSeconds": "3600"}
    (token,) = face.tokens
    assert {n.header("Authorization") for n in got} == {f"Bearer {token}"}
    assert all(n.query["event"] == ["AudioRecordingStarted"] for n in got)
    assert [n.status for n in face.notifications] == [200] * 30
    assert all(attempts_of(workers, e, "face-auth") == 1 for e in event_ids)
    # And neither the token nor the password is in Redis, the logs, the task events
    # (what Flower shows), the attempt records (the receiver echoed the token), or the export
    deadline = time.monotonic() + 20
    while (len(records := workers.store.list_attempts(destination="face-auth", limit=100)) < 30
           and time.monotonic() < deadline):
        time.sleep(0.2)
    assert len(records) == 30
    assert all(str(r["response"]).startswith("ok Bearer **** /Face/eventNotify?")
               for r in records), records[0]
    flower = [part for blob in celery_events for part in unwrap(blob)]
    assert any(b"recnotify.deliver" in part for part in flower), "task events were captured"
    exported = subprocess.run([sys.executable, "-m", "workers", "destinations", "export"],
                              env=workers.env(), cwd=ROOT, capture_output=True, timeout=60,
                              check=True).stdout
    places = {"redis": redis_dump(workers.redis, workers.key_prefix), "flower": flower,
              "logs": [workers.all_logs().encode()], "export": [exported],
              "records": [json.dumps(records, default=str).encode()]}
    assert any(event_ids[0].encode() in blob for blob in places["redis"]), "Redis was scanned"
    leaks = [(place, needle) for place, blobs in places.items()
             for needle in (token, PASSWORD) for blob in blobs if needle.encode() in blob]
    assert leaks == []
    assert b'password: "********"' in exported or b"password: '********'" in exported


def test_token_is_fetched_again_after_its_refresh_point(
    workers: WorkerFactory, face: TokenServer
) -> None:
    # Given tokens that live 6 s (refreshed at half their life: 3 s)
    face.lifetime_s = 6
    workers.configure(face_dest(face))
    workers.start(concurrency=2)
    publish(workers, 2, "a")
    first = face.wait_for(2)
    time.sleep(3.5)
    # When more recordings start after the refresh point
    publish(workers, 2, "b")
    got = face.wait_for(4)
    # Then a second login was made and the new notifications carry the new token
    assert len(face.logins) == 2
    old, new = list(face.tokens)
    assert {n.header("Authorization") for n in first} == {f"Bearer {old}"}
    assert {n.header("Authorization") for n in got[2:]} == {f"Bearer {new}"}
    assert [n.status for n in face.notifications] == [200] * 4  # refreshed before any 401


def test_a_401_logs_in_once_more_and_delivers_in_the_same_attempt(
    workers: WorkerFactory, face: TokenServer
) -> None:
    # Given a worker holding a token the receiver has since revoked
    workers.configure(face_dest(face))
    workers.start(concurrency=2)
    publish(workers, 1, "a")
    face.wait_for(1)
    face.revoke_all()
    # When the next recording starts
    (event_id,) = publish(workers, 1, "b")
    face.wait_for(2)
    time.sleep(0.5)
    # Then the receiver saw 200, 401 (old token), 200 (fresh token): one attempt
    assert [n.status for n in face.notifications] == [200, 401, 200]
    assert len(face.logins) == 2
    old, new = list(face.tokens)
    assert face.notifications[1].header("Authorization") == f"Bearer {old}"
    assert face.notifications[2].header("Authorization") == f"Bearer {new}"
    assert attempts_of(workers, event_id, "face-auth") == 1
    assert workers.store.list_dead_letters() == []


def test_login_refused_is_a_dead_letter_that_says_so_without_the_password(
    workers: WorkerFactory, face: TokenServer
) -> None:
    # Given a FACE destination with a wrong password (the login answers code 1)
    wrong = "Wrong-pa55-0000"
    workers.configure(face_dest(face, password=wrong))
    workers.start(concurrency=2)
    # When three recordings start
    event_ids = publish(workers, 3)
    letters = workers.wait_dead_letters(3)
    # Then each is dead at once (no retry helps), the reason names the login and its code
    assert sorted(str(d["event_id"]) for d in letters) == sorted(event_ids)
    for letter in letters:
        reason = str(letter["reason"])
        assert reason.startswith(
            f"login failed ({face.url('/Face/login')}): login answered code 1"), reason
        assert "Invalid credentials" in reason
        assert attempts_of(workers, str(letter["event_id"]), "face-auth") == 1
    # And the wrong password was tried once, not once per notification
    assert len(face.logins) == 1 and face.notifications == []
    everything = json.dumps(letters, default=str) + workers.all_logs()
    assert wrong not in everything and PASSWORD not in everything


def test_a_token_endpoint_down_is_retried_counts_for_the_circuit_then_recovers(
    workers: WorkerFactory, idp: TokenServer
) -> None:
    # Given an OAuth2 destination whose token endpoint answers 503
    idp.login_status = 503
    workers.configure(oauth_dest(idp.url("/token"), circuit={"failures": 2, "reset_s": 3},
                                 retry=fast_retry(max_attempts=8)))
    workers.start(concurrency=2)
    # When a recording starts
    (event_id,) = publish(workers, 1)
    deadline = time.monotonic() + 20
    circuit = workers.settings.keys.circuit("oauth")
    while len(idp.logins) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    # Then each failed login was a failed attempt, and two opened the circuit
    assert len(idp.logins) == 2 and idp.notifications == []
    assert workers.redis.hget(circuit, "state") == b"open"
    assert attempts_of(workers, event_id, "oauth") == 2
    assert "circuit of destination oauth OPEN" in workers.all_logs()
    # When the endpoint is back, the circuit's probe logs in and delivers
    idp.login_status = 200
    (got,) = idp.wait_for(1, timeout_s=20)
    (token,) = idp.tokens
    assert got.header("Authorization") == f"Bearer {token}"
    assert json.loads(got.body)["id"] == event_id
    assert idp.logins[-1].form == {"grant_type": "client_credentials", "scope": "notify"}
    deadline = time.monotonic() + 10
    while workers.redis.hget(circuit, "state") is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert workers.redis.hget(circuit, "state") is None  # closed again


def test_an_unreachable_token_endpoint_dead_letters_after_the_retries(
    workers: WorkerFactory, idp: TokenServer
) -> None:
    # Given a token endpoint on a port where nothing listens
    closed = f"http://127.0.0.1:{idp.port}/token"
    idp.__exit__()
    workers.configure(oauth_dest(closed, retry=fast_retry(max_attempts=3),
                                 circuit={"failures": 50, "reset_s": 1}))
    workers.start(concurrency=2)
    publish(workers, 1)
    (letter,) = workers.wait_dead_letters(1, timeout_s=30)
    reason = str(letter["reason"])
    assert reason.startswith("gave up after 3 attempts; last: login failed")
    assert "endpoint unavailable: connection refused" in reason
    assert CLIENT_SECRET not in json.dumps(letter, default=str)


def test_token_in_the_url_parameters_is_signed_and_replaced_after_a_401(
    workers: WorkerFactory, face: TokenServer
) -> None:
    # Given a FACE destination taking the token as ?token=%TOKEN%, and a signing secret
    from workers.http.signing import generate_secret, verify

    secret = generate_secret()
    spec = {"type": "login_form", "login_url": face.url("/Face/login"), "username": face.user,
            "password": PASSWORD, "token_in": "params"}
    params = {"RECORDING_STARTED_EVENT": "event=AudioRecordingStarted&ucid=%UCID%&token=%TOKEN%"}
    workers.configure(
        f"destinations:\n  - name: face-q\n    preset: face\n"
        f"    url: {face.url('/Face/eventNotify')}\n    secret: {secret}\n"
        f"    params: {json.dumps(params)}\n    auth: {json.dumps(spec)}\n")
    workers.start(concurrency=2)
    publish(workers, 1, "a")
    face.wait_for(1)
    face.revoke_all()
    publish(workers, 1, "b")
    face.wait_for(2)
    old, new = list(face.tokens)
    first, refused, second = face.notifications
    assert (first.status, refused.status, second.status) == (200, 401, 200)
    assert first.query["token"] == [old] and second.query["token"] == [new]
    assert first.header("Authorization") is None
    # the signature covers the target with the token in it
    for n in (first, second):
        assert verify(secret, n.header("webhook-id") or "", int(n.header("webhook-timestamp")
                                                                or 0),
                      n.target.encode(), n.header("webhook-signature") or "")
    assert new not in workers.all_logs()


def test_admin_api_masks_the_credential_and_keeps_it_on_edit(
    workers: WorkerFactory, face: TokenServer, admin: AdminServer
) -> None:
    # Given a destination with a login created through the admin API
    auth = {"type": "login_form", "login_url": face.url("/Face/login"),
            "username": face.user, "password": PASSWORD}
    body = {"name": "face-api", "preset": "face", "url": face.url("/Face/eventNotify"),
            "auth": auth}
    created = admin.call("POST", "/api/destinations", json=body)
    assert created.status_code == 201, created.text
    shown = admin.call("GET", "/api/destinations/face-api").json()
    # Then every answer shows the password masked
    assert shown["auth"]["password"] == "********" and PASSWORD not in created.text
    # And "send test notification" logs in too, and its answer shows no token
    sent = admin.call("POST", "/api/destinations/face-api/test",
                      json={"type": "RECORDING_STARTED_EVENT"})
    assert sent.status_code == 200, sent.text
    assert sent.json()["outcome"] == "delivered" and len(face.logins) == 1, sent.text
    (token,) = face.tokens
    assert face.notifications[0].header("Authorization") == f"Bearer {token}"
    assert token not in sent.text and PASSWORD not in admin.log()
    # When it is edited with the masked value sent back (PUT) or left out (PATCH)
    shown["auth"]["username"] = "other@example.com"
    assert admin.call("PUT", "/api/destinations/face-api", json=shown).status_code == 200
    patched = admin.call("PATCH", "/api/destinations/face-api",
                         json={"auth": {"expiration_s": 600}})
    assert patched.status_code == 200, patched.text
    # Then the stored password is kept
    stored = workers.store.get("face-api").auth
    assert stored is not None and stored.credential == PASSWORD
    assert (stored.user, stored.expiration_s) == ("other@example.com", 600)
    # But a masked password is not carried to another login host
    moved = admin.call("PATCH", "/api/destinations/face-api",
                       json={"auth": {"login_url": "https://elsewhere.example/Face/login"}})
    assert moved.status_code == 422
    assert any(e["field"] == "auth.password" and "same host:port" in e["message"]
               for e in moved.json()["errors"])
    # And %TOKEN% without an auth whose token goes in the params is refused with the fix
    bad = admin.call("POST", "/api/destinations", json={
        "name": "no-auth", "events": ["RECORDING_STARTED_EVENT"], "url": face.url("/x"),
        "params": "token=%TOKEN%"})
    assert bad.status_code == 422
    assert "token_in: params" in bad.text
