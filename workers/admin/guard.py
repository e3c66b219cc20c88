"""What keeps a web browser from driving the admin service unless the operator meant it.

An ASGI middleware in front of every route:

- open mode (no token) answers only loopback ``Host`` values (127.0.0.0/8,
  ``localhost``, ``[::1]``, any port): a DNS-rebinding page's requests carry
  its own name and get 400;
- in open mode, a state-changing request (POST, PUT, PATCH, DELETE) must carry
  a JSON body type and an ``Origin`` equal to the service's own: a cross-site
  form cannot send JSON, a cross-site ``fetch`` of JSON needs a CORS preflight
  that this service never grants, and both carry their own ``Origin`` (403);
  with a token configured, the routes need the bearer token, which a page on
  another site does not have;
- ``OPTIONS`` answers 204 with the path's real ``Allow`` and no CORS grant, and ``HEAD``
  answers what ``GET`` would, without the body;
- every answer carries CSP, ``X-Frame-Options: DENY``, ``nosniff`` and
  ``Referrer-Policy: no-referrer``; a redirect's ``Location`` is made relative,
  so it never echoes the ``Host`` header.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Guard", "allowed_methods", "is_loopback_host"]

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")
#: Swagger UI at /docs loads its script and style from jsDelivr and starts with an inline script.
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "img-src 'self' data: https://fastapi.tiangolo.com; connect-src 'self'; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
DEFAULT_PORTS = {"http": 80, "https": 443}


def is_loopback_host(host: str) -> bool:
    """True for a ``Host`` header naming this machine: localhost or a loopback IP, any port."""
    if host.startswith("["):
        name, bracket, port = host[1:].partition("]")
        if not bracket or (port and not (port[0] == ":" and port[1:].isdigit())):
            return False
    else:
        name, colon, port = host.partition(":")
        if colon and not port.isdigit():
            return False
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _origin_key(scheme: str, netloc: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    return scheme, (parts.hostname or ""), port


def origin_matches(origin: str, scheme: str, host: str) -> bool:
    """True when ``Origin`` names this service as reached (``scheme://Host``)."""
    parts = urlsplit(origin)
    if parts.scheme not in DEFAULT_PORTS or parts.path or parts.query:
        return False
    given = _origin_key(parts.scheme, parts.netloc)
    return given is not None and given == _origin_key(scheme, host)


def allowed_methods(routes: Sequence[BaseRoute], path: str) -> list[str]:
    """Every method some route serves at ``path`` (plus HEAD and OPTIONS)."""
    methods: set[str] = set()
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        probe = {"type": "http", "path": path, "root_path": "", "method": method}
        for route in routes:
            if route.matches(probe)[0] != Match.FULL:
                continue
            if not isinstance(route, Mount) or method == "GET":  # static files: GET only
                methods.add(method)
    if not methods:
        return []
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods | {"OPTIONS"})


class Guard:
    """The middleware of this module's docstring; ``open_mode`` means no token configured."""

    def __init__(self, app: ASGIApp, *, open_mode: bool,
                 routes: Callable[[], Sequence[BaseRoute]]) -> None:
        self.app = app
        self.open_mode = open_mode
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        send = self._secured(scope, send)
        host = headers.get("host", "")
        method = scope["method"]
        if self.open_mode and host and not is_loopback_host(host):
            await _answer(send, 400, "host", f"Host {host!r} is not a loopback name: without "
                          "RECNOTIFY_ADMIN_TOKEN this service answers only 127.0.0.1, "
                          "localhost or [::1] (to serve other names, set a token)")
            return
        if method == "OPTIONS":
            allow = allowed_methods(self.routes(), scope["path"])
            if not allow:
                await _answer(send, 404, "", f"no such path: {scope['path']}")
                return
            await _answer(send, 204, "", "", headers={"allow": ", ".join(allow)})
            return
        if self.open_mode and method in STATE_CHANGING:
            problem = self._cross_site(headers, scope.get("scheme", "http"), host)
            if problem:
                await _answer(send, 403, problem[0], problem[1])
                return
        if method == "HEAD":  # the routes are declared for GET: answer its headers only
            scope = {**scope, "method": "GET"}
            send = _headers_only(send)
        await self.app(scope, receive, send)

    @staticmethod
    def _cross_site(headers: dict[str, str], scheme: str, host: str) -> tuple[str, str] | None:
        media = headers.get("content-type", "").partition(";")[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            return ("content-type", f"{media or 'no content type'!s} refused: without a token "
                    "a state-changing request must send Content-Type: application/json "
                    "(even with no body)")
        origin = headers.get("origin")
        if origin is None or not origin_matches(origin, scheme, host):
            shown = repr(origin) if origin is not None else "no Origin"
            return ("origin", f"{shown} refused: without a token a state-changing request "
                    f"must send Origin: {scheme}://{host or '127.0.0.1'} (what the admin page "
                    "sends), so another site's page cannot make changes")
        return None

    @staticmethod
    def _secured(scope: Scope, send: Send) -> Send:
        csp = DOCS_CSP if scope["path"].startswith("/docs") else PAGE_CSP

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw: list[tuple[bytes, bytes]] = list(message.get("headers", []))
                names = {k.lower() for k, _ in raw}
                for name, value in (("content-security-policy", csp),
                                    ("x-frame-options", "DENY"),
                                    ("x-content-type-options", "nosniff"),
                                    ("referrer-policy", "no-referrer")):
                    if name.encode() not in names:
                        raw.append((name.encode(), value.encode()))
                raw = [(k, _relative(v)) if k.lower() == b"location" else (k, v) for k, v in raw]
                message = {**message, "headers": raw}
            await send(message)

        return secured


def _headers_only(send: Send) -> Send:
    async def head(message: Message) -> None:
        if message["type"] == "http.response.body":
            if message.get("more_body"):
                return
            message = {"type": "http.response.body", "body": b""}
        await send(message)

    return head


def _relative(location: bytes) -> bytes:
    """An absolute ``Location`` made relative: the service redirects only to itself."""
    parts = urlsplit(location.decode("latin-1"))
    if not parts.scheme and not parts.netloc:
        return location
    path = parts.path or "/"
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    return (path + (f"?{parts.query}" if parts.query else "")).encode("latin-1")


async def _answer(send: Send, status: int, field: str, message: str,
                  headers: dict[str, str] | None = None) -> None:
    body = b"" if status == 204 else json.dumps(
        {"errors": [{"field": field, "message": message}]}).encode()
    raw = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    if body:
        raw += [(b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode())]
    start: dict[str, Any] = {"type": "http.response.start", "status": status, "headers": raw}
    await send(start)
    await send({"type": "http.response.body", "body": body})
