"""Attacks on a running service, each shown stopped (issue 7).

Real Redis, real ``recnotify worker`` processes, a real HTTP receiver. Each test
attempts something a hostile producer, a careless configuration or a curious
reader could do and checks what the receiver, the dead letters, Redis, the logs
and the CLI show afterwards.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import redis

from producer.errors import InvalidEvent
from tests.helpers import ROOT, TEST_SECRET_KEY, WorkerFactory, fast_retry
from tests.receiver import Receiver
from workers.destinations import InvalidDestination, load_file
from workers.http.signing import generate_secret, verify
from workers.store.database import Store

pytestmark = pytest.mark.slow


def dest_yaml(name: str, url: str, params: str = "", **extra: Any) -> str:
    fields = {"name": name, "events": "all", "scope": "global", "url": url, "params": params,
              **extra}
    return "  - " + json.dumps(fields) + "\n"


def configure(workers: WorkerFactory, *dests: str) -> None:
    workers.configure("destinations:\n" + "".join(dests))


def reasons(letters: list[dict[str, Any]]) -> dict[str, str]:
    return {str(d["destination"]): str(d["reason"]) for d in letters}


# -- 1. outbound address control ----------------------------------------------------------

def test_metadata_address_and_loopback_denied_by_configuration_are_dead_lettered(
        workers: WorkerFactory, receiver: Receiver) -> None:
    configure(workers,
              dest_yaml("metadata", "http://169.254.169.254/latest/meta-data"),
              dest_yaml("loopback", f"http://localhost:{receiver.port}/internal"))
    proc = workers.start(concurrency=2, RECNOTIFY_DENY_CIDRS="127.0.0.0/8,::1/128")
    workers.publisher().publish("RECORDING_STARTED_EVENT", params={"UCID": "ssrf"})
    got = reasons(workers.wait_dead_letters(2, timeout_s=30))
    assert "169.254.169.254" in got["metadata"] and "169.254.0.0/16" in got["metadata"]
    assert re.search(r"refused address (127\.0\.0\.1|::1) for host 'localhost': matches rule "
                     r"(127\.0\.0\.0/8|::1/128)", got["loopback"]), got["loopback"]
    letters = workers.store.list_dead_letters()
    assert all(len(d["attempts"]) == 1 for d in letters), "a refused address is final"
    assert receiver.received() == [] and proc.poll() is None


def test_destination_deny_and_allow_lists_refuse_what_the_global_rules_allow(
        workers: WorkerFactory, receiver: Receiver) -> None:
    configure(workers,
              dest_yaml("open", receiver.url("/open")),
              dest_yaml("no-loopback", receiver.url("/deny"), deny_cidrs=["127.0.0.0/8"]),
              dest_yaml("private-only", receiver.url("/allow"), allow_cidrs=["10.0.0.0/8"]),
              dest_yaml("mapped", f"http://[::ffff:169.254.169.254]:{receiver.port}/m"))
    workers.start(concurrency=2)
    workers.publisher().publish("RECORDING_STARTED_EVENT", params={"UCID": "cidr"})
    receiver.wait_for(1)
    got = reasons(workers.wait_dead_letters(3, timeout_s=30))
    assert [r.path for r in receiver.received()] == ["/open"]
    assert "matches rule 127.0.0.0/8" in got["no-loopback"]
    assert "outside allow list 10.0.0.0/8" in got["private-only"]
    assert "169.254.0.0/16" in got["mapped"]


# -- 4. hostile input ---------------------------------------------------------------------

def test_publish_helpers_refuse_oversized_events_and_too_many_params(
        workers: WorkerFactory) -> None:
    publisher = workers.publisher()
    with pytest.raises(ValueError, match="over the 65536-byte limit") as oversized:
        publisher.publish("RECORDING_STARTED_EVENT", params={"UCID": "x" * 70_000})
    assert isinstance(oversized.value, InvalidEvent) and oversized.value.field == "event"
    many = {f"X{i}": "v" for i in range(65)}
    with pytest.raises(ValueError, match="params has 65 entries, over the limit of 64"):
        publisher.publish("RECORDING_STARTED_EVENT", params=many)
    assert workers.redis.xlen(workers.settings.keys.events) == 0


def test_hostile_input_is_dead_lettered_and_never_stops_the_worker(
        workers: WorkerFactory, receiver: Receiver) -> None:
    configure(workers, dest_yaml("hook", receiver.url("/h"), "ucid=%UCID%&call=%CALLID%"))
    proc = workers.start(concurrency=2)
    pub = workers.publisher()
    crlf = "u1\r\nX-Injected: yes\r\nContent-Length: 0\r\n\r\nGET /smuggled HTTP/1.1"
    pub.publish("RECORDING_STARTED_EVENT", params={"UCID": crlf})
    # An event under 64 KiB whose URL renders far over 8 KiB (each "é" is 6 bytes encoded).
    pub.publish("RECORDING_STARTED_EVENT", params={"UCID": "é" * 2000, "CALLID": "long"})
    stream, client = workers.settings.keys.events, workers.redis
    client.xadd(stream, {"event": b"\xff\xfe not utf-8"})
    client.xadd(stream, {"event": "[" * 50_000 + "]" * 50_000})
    client.xadd(stream, {"event": json.dumps({"type": "RECORDING_STARTED_EVENT",
                                              "params": {"UCID": "x" * 300_000}})})
    client.xadd(stream, {"event": '{"type": "RECORDING_STARTED_EVENT", "params": {"UCID": '
                         + "{\"a\": " * 50 + "1" + "}" * 50 + "}}"})
    client.xadd(stream, {"no_event_field": "1"})
    pub.publish("RECORDING_STARTED_EVENT", params={"UCID": "still-alive"})
    first, last = receiver.wait_for(2)
    letters = workers.wait_dead_letters(6, timeout_s=30)
    time.sleep(0.3)
    # CRLF: one request, the value intact in the query, no injected header or request.
    assert [r.path for r in receiver.received()] == ["/h", "/h"]
    assert first.query["ucid"] == [crlf] and first.header("X-Injected") is None
    assert last.query["ucid"] == ["still-alive"] and proc.poll() is None
    texts = sorted(str(d["reason"]) for d in letters)
    assert any("rendered URL is" in t and "over the limit of 8192 bytes" in t for t in texts)
    assert any("not valid UTF-8" in t for t in texts)
    assert any("not valid JSON" in t and "recursion" in t for t in texts)
    assert any("far over the 65536-byte limit" in t for t in texts)
    assert any("must be a string or an integer, got dict" in t for t in texts), texts
    assert any("no 'event' field" in t for t in texts)


# -- 3. secrets ---------------------------------------------------------------------------

@pytest.fixture
def celery_events(redis_url: str) -> Iterator[list[bytes]]:
    """Every Celery event published while the test runs: exactly what Flower sees."""
    captured: list[bytes] = []
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    pubsub.psubscribe("*celeryev*")
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            message = pubsub.get_message(timeout=0.2)
            if message and message["type"] == "pmessage":
                captured.append(message["data"])

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    yield captured
    stop.set()
    thread.join(5)
    pubsub.close()
    client.close()


def unwrap(blob: bytes) -> list[bytes]:
    """``blob`` plus every base64 message body inside it (kombu envelopes), recursively."""
    found = [blob]
    try:
        data = json.loads(blob)
    except ValueError:
        return found
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            body = item.get("body")
            if isinstance(body, str) and item.get("properties", {}).get("body_encoding") \
                    == "base64":
                found.extend(unwrap(base64.b64decode(body)))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def redis_dump(client: redis.Redis, prefix: str) -> list[bytes]:
    """Every value of every key under ``prefix``, whatever its type."""
    blobs: list[bytes] = []
    for key in client.scan_iter(match=prefix + "*", count=1000):
        kind = client.type(key)
        blobs.append(key)
        if kind == b"string":
            blobs.append(client.get(key) or b"")
        elif kind == b"list":
            blobs.extend(client.lrange(key, 0, -1))
        elif kind == b"hash":
            blobs.extend(b for pair in client.hgetall(key).items() for b in pair)
        elif kind == b"set":
            blobs.extend(client.smembers(key))
        elif kind == b"zset":
            blobs.extend(m for m, _ in client.zrange(key, 0, -1, withscores=True))
        elif kind == b"stream":
            blobs.extend(v for _, fields in client.xrange(key) for kv in fields.items()
                         for v in kv)
    return [part for blob in blobs for part in unwrap(blob)]


def cli(workers: WorkerFactory, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "workers", *args], env=workers.env(), cwd=ROOT,
                          capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr.decode()
    return (done.stdout + done.stderr).decode()


def test_secrets_never_reach_redis_logs_flower_export_cli_or_errors(
        workers: WorkerFactory, receiver: Receiver, celery_events: list[bytes]) -> None:
    signing, api_key, password = generate_secret(), "sk-LIVE-4f9a8e7d6c", "Pa55-in-the-url"
    basic = base64.b64encode(f"svc:{password}".encode()).decode()
    needles = [signing, signing.removeprefix("whsec_"), api_key, password, basic]
    secret_bits = {"secret": signing, "headers": {"X-Api-Key": {"value": api_key,
                                                                "secret": True}}}
    receiver.script("/down", [500])
    configure(workers,
              dest_yaml("secretive", f"http://svc:{password}@127.0.0.1:{receiver.port}/ok",
                        "ucid=%UCID%", **secret_bits),
              dest_yaml("failing", f"http://svc:{password}@127.0.0.1:{receiver.port}/down",
                        retry=fast_retry(max_attempts=2), **secret_bits))
    workers.start(concurrency=2)
    event_id = workers.publisher().publish("RECORDING_STARTED_EVENT", params={"UCID": "s1"})
    (got,) = receiver.wait_for(1, lambda r: r.path == "/ok")
    letters = workers.wait_dead_letters(1, timeout_s=30)
    time.sleep(1.0)
    # The secrets were used on the wire (so they were there to leak) ...
    assert got.header("X-Api-Key") == api_key and got.header("Authorization") == f"Basic {basic}"
    assert verify(signing, got.header("webhook-id") or "", int(got.header("webhook-timestamp")
                                                                or 0),
                  got.target.encode(), got.header("webhook-signature") or "")
    # ... and are nowhere else.
    flower = [part for blob in celery_events for part in unwrap(blob)]
    assert any(event_id.encode() in part and b"recnotify.deliver" in part for part in flower), \
        "the task events Flower shows were captured"
    places = {
        "redis": redis_dump(workers.redis, workers.key_prefix),
        "flower": flower,
        "logs": [workers.all_logs().encode()],
        "dead letters": [json.dumps(letters).encode()],
        "cli": [cli(workers, "destinations", "export").encode(),
                cli(workers, "destinations", "list").encode(),
                cli(workers, "destinations", "show", "secretive").encode(),
                cli(workers, "dead-letters", "list").encode()],
    }
    assert any(event_id.encode() in blob for blob in places["redis"]), "Redis data was scanned"
    leaks = [(place, needle) for place, blobs in places.items() for needle in needles
             for blob in blobs if needle.encode() in blob]
    assert leaks == []
    assert any(b"********" in blob for blob in places["cli"]), "secrets are shown masked"
    exported = cli(workers, "destinations", "export", "--include-secrets")
    assert signing in exported and api_key in exported and password in exported


def test_refusal_messages_mask_url_userinfo_and_secret_values() -> None:
    with pytest.raises(InvalidDestination) as bad_url:
        load_file("destinations:\n" + dest_yaml("x", "ftp://svc:Pa55-word@10.0.0.1/h"))
    assert "Pa55-word" not in str(bad_url.value)
    with pytest.raises(InvalidDestination) as bad_header:
        load_file("destinations:\n" + dest_yaml(
            "x", "http://10.0.0.1/h", headers={"X-Key": {"value": "k3y\r\nX: 1", "secret": True}}))
    assert "k3y" not in str(bad_header.value)


def test_rotated_secret_signs_with_old_and_new_during_the_overlap_only(
        workers: WorkerFactory, receiver: Receiver) -> None:
    old, new = generate_secret(), generate_secret()
    configure(workers, dest_yaml("rotating", receiver.url("/r"), "ucid=%UCID%", secret=old))
    workers.start(concurrency=2)
    pub = workers.publisher()
    pub.publish("RECORDING_STARTED_EVENT", params={"UCID": "before"})
    receiver.wait_for(1)
    overlap_s = 6.0
    rotating = Store(workers.settings.effective_database_url, TEST_SECRET_KEY,
                     rotation_overlap_s=overlap_s)
    rotating.save(replace(rotating.get("rotating"), secret=new))
    rotated_at = time.time()
    time.sleep(2.5)  # workers apply a change within 2 s
    pub.publish("RECORDING_STARTED_EVENT", params={"UCID": "during"})
    receiver.wait_for(2)
    time.sleep(max(0.0, rotated_at + overlap_s + 0.5 - time.time()))
    pub.publish("RECORDING_STARTED_EVENT", params={"UCID": "after"})
    receiver.wait_for(3)
    rotating.close()

    def signatures(ucid: str) -> tuple[list[str], Any]:
        (r,) = receiver.received(lambda r: r.query.get("ucid") == [ucid])
        header = r.header("webhook-signature") or ""
        args = (r.header("webhook-id") or "", int(r.header("webhook-timestamp") or 0),
                r.target.encode())
        return header.split(" "), lambda secret, sig: verify(secret, *args, sig)

    before, check = signatures("before")
    assert len(before) == 1 and check(old, before[0])
    during, check = signatures("during")
    assert len(during) == 2 and check(new, during[0]) and check(old, during[1])
    assert not check(old, during[0]) and not check(new, during[1])
    after, check = signatures("after")
    assert len(after) == 1 and check(new, after[0]) and not check(old, after[0])


# -- 5. admin access ----------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_admin_api_refuses_calls_without_the_token_and_masks_secrets(
        workers: WorkerFactory) -> None:
    signing = generate_secret()
    configure(workers, dest_yaml("guarded", "http://10.0.0.9/h", secret=signing))
    token, port = "admin-token-for-the-test-0123", free_port()
    log_path = workers.tmp_path / "admin.log"
    with open(log_path, "ab") as log:
        admin = subprocess.Popen(
            [sys.executable, "-m", "workers", "admin", "--addr", f"127.0.0.1:{port}"],
            env=workers.env(RECNOTIFY_ADMIN_TOKEN=token), cwd=ROOT, stdout=log,
            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if http_get(f"{base}/healthz")[0] in (200, 503):
                    break
            except OSError:
                pass
            assert admin.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.3)
        assert http_get(f"{base}/api/destinations")[0] == 401
        assert http_get(f"{base}/api/destinations", token="wrong-token")[0] == 401
        assert http_get(f"{base}/api/destinations/guarded")[0] == 401
        status, body = http_get(f"{base}/api/destinations", token=token)
        assert status == 200 and b"guarded" in body
        assert signing.encode() not in body and signing.removeprefix("whsec_").encode() not in body
    finally:
        admin.terminate()
        admin.wait(20)
