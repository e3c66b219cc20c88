"""Real HTTP servers on loopback for destinations with ``auth``: they issue tokens and
accept notifications only with a live one.

``TokenServer("face")`` is FACE-like: ``POST /Face/login`` (form ``userEmail``,
``password``, ``expirationSeconds``) answers the FACE ``<result>`` XML; notifications
to any other path need a live token in the ``Authorization: Bearer`` header or in the
``token`` query parameter, else 401.

``TokenServer("oauth2")`` is an OAuth2 token endpoint (RFC 6749 4.4): ``POST /token``
with ``grant_type=client_credentials`` and the client's id and secret in HTTP Basic
(or the form); answers ``{"access_token", "token_type", "expires_in"}`` or
``{"error": "invalid_client"}`` with 401.

Knobs: ``lifetime_s`` (what the server announces), ``login_status`` (e.g. 503: the login
is down), ``face_code`` (1: refused), ``revoke_all()`` (every issued token is refused
from now on, so the next notification meets a 401).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Seen:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    status: int = 0
    at: float = field(default_factory=time.time)

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode(), keep_blank_values=True).items()}

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


class TokenServer:
    def __init__(self, kind: Literal["face", "oauth2"], *, user: str = "ops@example.com",
                 password: str = "pa55-Word-9f3c", lifetime_s: int = 3600) -> None:
        self.kind = kind
        self.user = user
        self.password = password
        self.lifetime_s = lifetime_s
        self.login_status = 200
        self.face_code = 0
        self.logins: list[Seen] = []
        self.notifications: list[Seen] = []
        #: token -> when the server stops accepting it
        self.tokens: dict[str, float] = {}
        self.cond = threading.Condition()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(self.command, self.path, dict(self.headers.items()),
                            self.rfile.read(length) if length else b"")
                status, ctype, body = server._answer(seen)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> TokenServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def login_path(self) -> str:
        return "/Face/login" if self.kind == "face" else "/token"

    def revoke_all(self) -> None:
        with self.cond:
            self.tokens = dict.fromkeys(self.tokens, 0.0)

    # -- answers ---------------------------------------------------------------------------
    def _answer(self, seen: Seen) -> tuple[int, str, bytes]:
        with self.cond:
            if seen.path == self.login_path:
                answer = self._login(seen)
                self.logins.append(seen)
            else:
                answer = self._notify(seen)
                self.notifications.append(seen)
            seen.status = answer[0]
            self.cond.notify_all()
            return answer

    def _issue(self) -> str:
        token = f"tok-{len(self.tokens) + 1}-{secrets.token_hex(12)}"
        self.tokens[token] = time.time() + self.lifetime_s
        return token

    def _login(self, seen: Seen) -> tuple[int, str, bytes]:
        if self.login_status != 200:
            return self.login_status, "text/plain", b"login unavailable"
        form = seen.form
        if self.kind == "face":
            good = form.get("userEmail") == self.user and form.get("password") == self.password
            if not good or self.face_code != 0:
                code = self.face_code or 1
                return 200, "application/xml", (
                    f"<result><code>{code}</code><message>Invalid credentials</message>"
                    "</result>").encode()
            token = self._issue()
            return 200, "application/xml", (
                f"<result><code>0</code><message>ACK</message><token>{token}</token>"
                f"<expiration>{self.lifetime_s}seconds</expiration></result>").encode()
        client_id, secret = form.get("client_id"), form.get("client_secret")
        basic = seen.header("Authorization") or ""
        if basic.startswith("Basic "):
            pair = base64.b64decode(basic[6:]).decode()
            client_id, _, secret = (unquote(p) for p in pair.partition(":"))
        if form.get("grant_type") != "client_credentials":
            return 400, "application/json", b'{"error": "unsupported_grant_type"}'
        if client_id != self.user or secret != self.password:
            return 401, "application/json", b'{"error": "invalid_client"}'
        body = {"access_token": self._issue(), "token_type": "Bearer",
                "expires_in": self.lifetime_s}
        if form.get("scope"):
            body["scope"] = form["scope"]
        return 200, "application/json", json.dumps(body).encode()

    def _notify(self, seen: Seen) -> tuple[int, str, bytes]:
        auth = seen.header("Authorization") or ""
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        token = token or (seen.query.get("token") or [None])[0]
        if token is None or self.tokens.get(token, 0.0) <= time.time():
            return 401, "text/plain", b"unauthorized"
        # echoes what it got, as some receivers do: recnotify must mask it in its records
        return 200, "text/plain", f"ok {auth} {seen.target}".encode()

    # -- waiting ---------------------------------------------------------------------------
    def wait_for(self, count: int, status: int | None = 200, timeout_s: float = 20.0
                 ) -> list[Seen]:
        """Wait for ``count`` notifications answered ``status`` (None: any)."""
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while True:
                found = [n for n in self.notifications if status is None or n.status == status]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {count} notification(s) answered {status}, got "
                        f"{[(n.target, n.status) for n in self.notifications][-10:]}; "
                        f"{len(self.logins)} login(s)")
                self.cond.wait(left)
