"""The admin service against a browser that the operator did not mean to use (issue 15.4),
and its answers when configuration or storage fail (issue 15.2): a real `recnotify admin`
process, a real Redis, and Debian's Chromium for the cross-site page."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, expect

from tests.admin_server import AdminServer
from tests.browser import browser, screenshot, sign_in
from tests.helpers import ROOT, WorkerFactory, fast_retry
from tests.receiver import Receiver
from workers.http.signing import generate_secret

__all__ = ["browser"]  # the fixture, re-exported for pytest


def dest(name: str, url: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "events": ["RECORDING_STARTED_EVENT"], "scope": "route:support",
            "url": url, "params": "ucid=%UCID%", **extra}


@pytest.fixture
def open_admin(workers: WorkerFactory) -> Iterator[AdminServer]:
    server = AdminServer(workers, token=None)
    try:
        yield server
    finally:
        server.stop()


def same_origin(server: AdminServer) -> dict[str, str]:
    return {"Origin": server.url, "Content-Type": "application/json"}


# -- open mode: loopback Host only, no cross-site changes --------------------------------------

@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.1.nip.io",
                                  "10.0.0.5:8080"])
def test_open_mode_refuses_a_host_that_is_not_loopback(open_admin: AdminServer,
                                                       host: str) -> None:
    for path in ("/", "/api/destinations", "/openapi.json"):
        answer = requests.get(open_admin.url + path, headers={"Host": host}, timeout=10)
        assert answer.status_code == 400, (path, answer.status_code)
        error = answer.json()["errors"][0]
        assert error["field"] == "host" and repr(host) in error["message"]
        assert "RECNOTIFY_ADMIN_TOKEN" in error["message"]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "LOCALHOST:1234"])
def test_open_mode_answers_loopback_hosts_on_any_port(open_admin: AdminServer,
                                                      host: str) -> None:
    answer = requests.get(open_admin.url + "/api/destinations", headers={"Host": host},
                          timeout=10)
    assert answer.status_code == 200 and answer.json() == []


def test_token_mode_answers_any_host(admin: AdminServer) -> None:
    answer = admin.call("GET", "/api/destinations", headers={"Host": "recnotify.example.com"})
    assert answer.status_code == 200


def test_open_mode_change_needs_json_and_this_origin(open_admin: AdminServer,
                                                     receiver: Receiver) -> None:
    url = open_admin.url + "/api/destinations"
    body = dest("victim", receiver.url())
    created = requests.post(url, json=body, headers={"Origin": open_admin.url}, timeout=10)
    assert created.status_code == 201, created.text
    disable = url + "/victim/disable"
    # a cross-site HTML form: no JSON type (and its own Origin, or none)
    for headers in ({"Content-Type": "application/x-www-form-urlencoded"},
                    {"Content-Type": "text/plain", "Origin": open_admin.url},
                    {}):
        answer = requests.post(disable, headers=headers, data=b"", timeout=10)
        assert answer.status_code == 403, (headers, answer.text)
        assert answer.json()["errors"][0]["field"] == "content-type"
    for origin in ("http://evil.example", "http://127.0.0.1:1", "null", None):
        headers = {"Content-Type": "application/json"}
        if origin is not None:
            headers["Origin"] = origin
        answer = requests.post(disable, headers=headers, timeout=10)
        assert answer.status_code == 403, (origin, answer.text)
        message = answer.json()["errors"][0]["message"]
        assert f"Origin: {open_admin.url}" in message
    assert requests.get(url + "/victim", timeout=10).json()["enabled"] is True
    # the same request from this service's own page is done
    answer = requests.post(disable, headers=same_origin(open_admin), timeout=10)
    assert answer.status_code == 200 and answer.json()["enabled"] is False
    localhost = open_admin.url.replace("127.0.0.1", "localhost")
    answer = requests.post(url + "/victim/enable", timeout=10, headers={
        "Host": localhost.removeprefix("http://"), "Origin": localhost,
        "Content-Type": "application/json; charset=utf-8"})
    assert answer.status_code == 200 and answer.json()["enabled"] is True


class EvilSite:
    """A page on another origin (another loopback port) that tries every change it can."""

    def __init__(self, admin_url: str) -> None:
        page = EVIL_PAGE.replace("ADMIN", admin_url).encode()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


EVIL_PAGE = """<!doctype html><html><body>
<iframe name="sink"></iframe>
<form id="form" method="POST" target="sink" enctype="text/plain"
      action="ADMIN/api/destinations/victim/disable"><input name='{"x":"' value='"}'></form>
<form id="form2" method="POST" target="sink" action="ADMIN/api/dead-letters/replay"></form>
<script>
const A = "ADMIN";
const tries = [
  fetch(A + "/api/destinations/victim/disable", {method: "POST", mode: "no-cors"}),
  fetch(A + "/api/dead-letters/replay", {method: "POST", mode: "no-cors",
        headers: {"Content-Type": "text/plain"}, body: "{}"}),
  fetch(A + "/api/destinations/victim/test", {method: "POST", mode: "no-cors",
        headers: {"Content-Type": "text/plain"}, body: '{"type": "RECORDING_STARTED_EVENT"}'}),
  fetch(A + "/api/destinations/victim/test", {method: "POST",
        headers: {"Content-Type": "application/json"},
        body: '{"type": "RECORDING_STARTED_EVENT"}'}),
  fetch(A + "/api/destinations/victim", {method: "PATCH",
        headers: {"Content-Type": "application/json"}, body: '{"url": "http://evil.example/"}'}),
  fetch(A + "/api/destinations/victim", {method: "DELETE"}),
];
document.getElementById("form").submit();
setTimeout(() => document.getElementById("form2").submit(), 300);
Promise.allSettled(tries).then((r) => {
  setTimeout(() => { document.title = "tried " + r.length; }, 1500);
});
</script></body></html>"""


@pytest.mark.slow
def test_a_cross_site_page_in_chromium_changes_nothing(
        browser: Browser, open_admin: AdminServer, receiver: Receiver,
        workers: WorkerFactory) -> None:
    receiver.script("/down", [500] * 4)
    headers = same_origin(open_admin)
    api = open_admin.url + "/api"
    for body in (dest("victim", receiver.url("/victim")),
                 dest("down", receiver.url("/down"), retry=fast_retry(max_attempts=1))):
        assert requests.post(api + "/destinations", json=body, headers=headers,
                             timeout=10).status_code == 201
    workers.start()
    workers.publisher().publish("RECORDING_STARTED_EVENT", route="support",
                                params={"UCID": "u1"})
    assert len(workers.wait_dead_letters(1, timeout_s=60)) == 1
    receiver.wait_for(2)  # victim delivered, down failed
    seen = len(receiver.received())
    audits = workers.store.list_audit()

    evil = EvilSite(open_admin.url)
    context = browser.new_context()
    try:
        tab = context.new_page()
        tab.goto(evil.url)
        expect(tab).to_have_title("tried 6", timeout=30_000)
        screenshot(tab, "admin-cross-site-attempt.png")
        # nothing changed: enabled, same URL, not deleted, no test sent, nothing replayed
        victim = requests.get(api + "/destinations/victim", timeout=10).json()
        assert victim["enabled"] is True and victim["url"] == receiver.url("/victim")
        assert len(workers.store.list_dead_letters()) == 1
        assert workers.store.list_audit() == audits
        assert len(receiver.received()) == seen
        # the operator's own page, in the same browser, can change things
        own = context.new_page()
        sign_in(own, open_admin)
        row = own.locator("#dest-table tr.dest-row", has_text="victim")
        row.get_by_role("button", name="Disable").click()
        expect(row).to_contain_text("Enable")
        assert requests.get(api + "/destinations/victim", timeout=10).json()["enabled"] is False
    finally:
        context.close()
        evil.close()


# -- headers, redirects, OPTIONS, bodies -------------------------------------------------------

def test_every_answer_carries_the_security_headers(admin: AdminServer) -> None:
    for path, auth in (("/", False), ("/api/destinations", True), ("/healthz", False),
                       ("/static/app.js", False), ("/docs", False), ("/nope", False)):
        answer = admin.call("GET", path, auth=auth)
        assert answer.headers["X-Frame-Options"] == "DENY", path
        assert answer.headers["X-Content-Type-Options"] == "nosniff", path
        csp = answer.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp, path
    page_csp = admin.call("GET", "/").headers["Content-Security-Policy"]
    assert "script-src 'self';" in page_csp and "unsafe-inline" not in page_csp


def test_a_redirect_never_echoes_the_host_header(admin: AdminServer) -> None:
    answer = admin.call("GET", "/api/destinations/", allow_redirects=False,
                        headers={"Host": "evil.example"})
    assert answer.status_code in (301, 307, 308), answer.status_code
    assert answer.headers["Location"] == "/api/destinations"


def test_options_answers_the_methods_of_the_path(admin: AdminServer) -> None:
    answer = admin.call("OPTIONS", "/api/destinations", auth=False,
                        headers={"Origin": "http://evil.example",
                                 "Access-Control-Request-Method": "POST"})
    assert answer.status_code == 204
    assert answer.headers["Allow"] == "GET, HEAD, OPTIONS, POST"
    assert "Access-Control-Allow-Origin" not in answer.headers
    one = admin.call("OPTIONS", "/api/destinations/x")
    assert one.headers["Allow"] == "DELETE, GET, HEAD, OPTIONS, PATCH, PUT"
    wrong = admin.call("PATCH", "/api/destinations")
    assert wrong.status_code == 405
    assert wrong.headers["Allow"] == "GET, HEAD, OPTIONS, POST"
    assert "PATCH is not allowed" in wrong.json()["errors"][0]["message"]
    static = admin.call("DELETE", "/static/app.js")
    assert static.status_code == 405 and static.headers["Allow"] == "GET, HEAD, OPTIONS"
    head = admin.call("HEAD", "/api/destinations")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(("payload", "needle"), [
    (b'{"name": "caf\xe9"}', "not UTF-8 (byte 0xe9"),
    (b'{"name": NaN}', "NaN"),
    (b"", "empty"),
    (b"null", "JSON object, got null"),
])
def test_a_malformed_body_answers_422(admin: AdminServer, payload: bytes, needle: str) -> None:
    answer = admin.call("POST", "/api/destinations", data=payload,
                        headers={"Content-Type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert needle in answer.json()["errors"][0]["message"]


def test_a_body_over_the_limit_is_413_without_reading_it_all(admin: AdminServer) -> None:
    huge = b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    answer = admin.call("POST", "/api/destinations", data=huge,
                        headers={"Content-Type": "application/json"})
    assert answer.status_code == 413, answer.text[:200]
    assert "over the limit of 1,048,576 bytes" in answer.json()["errors"][0]["message"]


def test_audit_believes_x_forwarded_for_only_from_a_trusted_proxy(
        workers: WorkerFactory, receiver: Receiver) -> None:
    spoof = {"X-Forwarded-For": "203.0.113.9"}
    server = AdminServer(workers)
    try:
        server.call("POST", "/api/destinations", json=dest("a", receiver.url()), headers=spoof)
    finally:
        server.stop()
    trusted = AdminServer(workers, env={"RECNOTIFY_TRUSTED_PROXIES": "127.0.0.1/32"})
    try:
        trusted.call("POST", "/api/destinations", json=dest("b", receiver.url()),
                     headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.7"})
    finally:
        trusted.stop()
    addrs = {a["target"]: a["remote_addr"] for a in workers.store.list_audit()}
    assert addrs == {"a": "127.0.0.1", "b": "203.0.113.7"}


def test_a_bad_trusted_proxies_setting_is_one_line(workers: WorkerFactory) -> None:
    import subprocess
    import sys

    from tests.helpers import ROOT

    env = workers.env(RECNOTIFY_TRUSTED_PROXIES="10.0.0.0/8, proxy.local")
    done = subprocess.run([sys.executable, "-m", "workers", "admin"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "'proxy.local' is not an IP address or CIDR" in done.stderr


# -- configuration and storage failures: a message, never a bare 500 ---------------------------

def test_a_secret_without_the_secret_key_says_how_to_set_it(
        workers: WorkerFactory, receiver: Receiver) -> None:
    server = AdminServer(workers, env={"RECNOTIFY_SECRET_KEY": None})
    try:
        answer = server.call("POST", "/api/destinations",
                             json=dest("s", receiver.url(), secret=generate_secret()))
        plain = server.call("POST", "/api/destinations", json=dest("p", receiver.url()))
    finally:
        server.stop()
    assert answer.status_code == 503, answer.text
    message = answer.json()["errors"][0]["message"]
    assert "RECNOTIFY_SECRET_KEY" in message and "'s'" in message
    assert plain.status_code == 201


def test_a_missing_schema_refuses_to_start_and_a_lost_one_names_db_upgrade(
        workers: WorkerFactory) -> None:
    import sqlite3

    # An admin never creates an empty database: without the schema it does not start
    empty = workers.tmp_path / "empty.db"
    env = workers.env(RECNOTIFY_DATABASE_URL=f"sqlite:///{empty}")
    done = subprocess.run([sys.executable, "-m", "workers", "admin"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "recnotify db upgrade" in line and str(empty) in line
    assert not empty.exists()
    # A schema that goes missing under a running admin: 503 naming the fix, never a 500
    server = AdminServer(workers)
    try:
        url = workers.settings.effective_database_url
        assert url.startswith("sqlite:///")
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            for (table,) in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                conn.execute(f'DROP TABLE "{table}"')
        answer = server.call("GET", "/api/destinations")
        create = server.call("POST", "/api/destinations", json=dest("x", "https://a.example/"))
    finally:
        server.stop()
    for got in (answer, create):
        assert got.status_code == 503, got.text
        assert "recnotify db upgrade" in got.json()["errors"][0]["message"]


def test_a_database_that_is_down_is_503_with_its_message(workers: WorkerFactory) -> None:
    from workers.ops.embedded import free_port

    down = f"postgresql+psycopg://recnotify:pw-s3cret@127.0.0.1:{free_port()}/recnotify"
    server = AdminServer(workers, env={"RECNOTIFY_DATABASE_URL": down}, healthy=False)
    try:
        answer = server.call("GET", "/api/destinations")
        health = server.call("GET", "/healthz", auth=False)
    finally:
        server.stop()
    assert answer.status_code == 503, answer.text
    message = answer.json()["errors"][0]["message"]
    assert "OperationalError" in message and "refused" in message, message
    assert "RECNOTIFY_DATABASE_URL" in message
    assert "pw-s3cret" not in answer.text + health.text
    assert health.status_code == 503
