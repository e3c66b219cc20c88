"""Building the HTTP request of one notification attempt (SPEC 5 and 6). Pure.

The request target (path and query) is sent exactly as rendered; the signature
covers it for GET and the body for POST, so the data a receiver acts on is signed.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from producer.events import Event
from workers import __version__
from workers.signing import sign
from workers.templates import render_url

USER_AGENT = f"recnotify/{__version__}"
#: Namespace of notification ids: uuid5(NS, f"{event_id}/{destination}").
NOTIFICATION_NAMESPACE = uuid.UUID("5f3c1e8a-8a4e-4f0e-9a57-2b1d6c7e9f10")


def notification_id(event_id: str, destination: str) -> str:
    """The same on every attempt, re-read and replay; different per destination."""
    return "msg_" + uuid.uuid5(NOTIFICATION_NAMESPACE, f"{event_id}/{destination}").hex


class HeaderLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> str: ...


class Sendable(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def method(self) -> str: ...
    @property
    def headers(self) -> tuple[Any, ...]: ...
    def template_for(self, event_type: str) -> str: ...
    def active_secrets(self, now_s: float) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    """One HTTP request, ready for the transport."""

    method: str
    scheme: str
    host: str
    port: int
    target: str
    headers: dict[str, str]
    body: bytes | None

    @property
    def url(self) -> str:
        default = 443 if self.scheme == "https" else 80
        netloc = _bracket(self.host) + ("" if self.port == default else f":{self.port}")
        return f"{self.scheme}://{netloc}{self.target}"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def split_url(url: str) -> tuple[str, str, str, int, str]:
    """(scheme, userinfo, host, port, target) with the target exactly as written."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    host = parts.hostname or ""
    port = parts.port or (443 if scheme == "https" else 80)
    after_authority = url.split("//", 1)[1]
    slash = min((i for i in (after_authority.find(c) for c in "/?") if i >= 0), default=-1)
    target = after_authority[slash:] if slash >= 0 else "/"
    if target.startswith("?"):
        target = "/" + target
    return scheme, userinfo, host, port, target


def post_body(event: Event, destination: str, sequence: int | None) -> bytes:
    body: dict[str, Any] = {
        "id": event.id,
        "type": event.type,
        "result": event.result,
        "error": event.error,
        "occurred_at": event.occurred_at,
        "route": event.route,
        "account": event.account,
        "realm": event.realm,
        "params": event.params,
        "destination": destination,
    }
    if sequence is not None:
        body["sequence"] = sequence
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def build_request(
    event: Event,
    dest: Sendable,
    *,
    nid: str,
    now_s: float,
    sequence: int | None = None,
) -> OutboundRequest:
    """The request of one attempt: rendered URL, headers, body and signature."""
    url = render_url(dest.url, dest.template_for(event.type), event.values())
    scheme, userinfo, host, port, target = split_url(url)
    timestamp = int(now_s)
    headers: dict[str, str] = {}
    for header in dest.headers:
        headers[header.name] = header.value
    if userinfo and not any(k.lower() == "authorization" for k in headers):
        user, _, password = userinfo.partition(":")
        token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    headers.update({
        "User-Agent": USER_AGENT,
        "X-Recnotify-Event": event.type,
        "webhook-id": nid,
        "webhook-timestamp": str(timestamp),
    })
    body: bytes | None = None
    if dest.method == "POST":
        body = post_body(event, dest.name, sequence)
        headers["Content-Type"] = "application/json"
    if sequence is not None:
        headers["X-Recnotify-Sequence"] = str(sequence)
    secrets = dest.active_secrets(now_s)
    if secrets:
        payload = body if body is not None else target.encode("utf-8")
        headers["webhook-signature"] = sign(secrets, nid, timestamp, payload)
    return OutboundRequest(dest.method, scheme, host, port, target, headers, body)
