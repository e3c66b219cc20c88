"""A real HTTP server on loopback that records every notification it receives.

Responses are scripted per path: ``receiver.script("/flaky", [503, 503, 200])``
answers 503 twice, then 200 for every later request (the last status repeats).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Received:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)
    status: int = 0

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query, keep_blank_values=True)

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self, host: str = "127.0.0.1", delay_s: float = 0.0) -> None:
        self.requests: list[Received] = []
        self.scripts: dict[str, list[int]] = {}
        self.extra_headers: dict[str, dict[str, str]] = {}
        self.delay_s = delay_s
        #: Answer 503 to the first attempt of each notification this predicate selects.
        self.fail_first: Callable[[Received], bool] | None = None
        self._seen_ids: set[str] = set()
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, headers = receiver._record(
                    Received(self.command, self.path, dict(self.headers.items()), body)
                )
                if receiver.delay_s:
                    time.sleep(receiver.delay_s)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST = do_PUT = _handle

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                """A sender killed mid-request (the fault tests do that) resets its
                connection: expected, not worth a traceback."""
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)  # type: ignore[arg-type]

        self.server = Server((host, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, statuses: list[int], headers: dict[str, str] | None = None) -> None:
        with self.lock:
            self.scripts[path] = list(statuses)
            if headers:
                self.extra_headers[path] = headers

    def _record(self, request: Received) -> tuple[int, dict[str, str]]:
        with self.cond:
            self.requests.append(request)
            statuses = self.scripts.get(request.path)
            status = 200
            if statuses:
                status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
            webhook_id = request.header("webhook-id") or ""
            if self.fail_first and webhook_id not in self._seen_ids and self.fail_first(request):
                status = 503
            self._seen_ids.add(webhook_id)
            request.status = status
            self.cond.notify_all()
            return status, self.extra_headers.get(request.path, {})

    def received(self, predicate: Callable[[Received], bool] = lambda r: True) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if predicate(r)]

    def wait_for(
        self,
        count: int,
        predicate: Callable[[Received], bool] = lambda r: True,
        timeout_s: float = 20.0,
    ) -> list[Received]:
        """Wait until ``count`` matching requests arrived; returns them (fails on timeout)."""
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while True:
                found = [r for r in self.requests if predicate(r)]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"expected {count} request(s), got {len(found)} after {timeout_s} s: "
                        f"{[r.target for r in self.requests][-10:]}"
                    )
                self.cond.wait(remaining)
