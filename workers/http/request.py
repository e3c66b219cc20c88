"""Building the HTTP request of one notification attempt (SPEC 5 and 6). Pure.

The request target (path and query) is sent exactly as rendered; the signature
covers it for GET and the body for POST, so the data a receiver acts on is signed.

Nothing can split the request: parameter values are percent-encoded by
:mod:`workers.http.templates` and header values are checked when a destination is
saved, and, as a last line, :meth:`OutboundRequest.check` refuses (with a
:class:`DeliveryError`, which dead-letters the notification) any CR, LF, NUL or
other control character in the method, host, target, a header name or value.
A space or a non-ASCII character in the template's literal text is
percent-encoded (UTF-8), the only change ever made to the rendered URL.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit

from producer.events import Event
from workers import __version__
from workers.errors import DeliveryError
from workers.http.signing import sign
from workers.http.templates import render_url

USER_AGENT = f"recnotify/{__version__}"
#: Namespace of notification ids: uuid5(NS, f"{event_id}/{destination}").
NOTIFICATION_NAMESPACE = uuid.UUID("5f3c1e8a-8a4e-4f0e-9a57-2b1d6c7e9f10")


def notification_id(event_id: str, destination: str) -> str:
    """The same on every attempt, re-read and replay; different per destination."""
    return "msg_" + uuid.uuid5(NOTIFICATION_NAMESPACE, f"{event_id}/{destination}").hex


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


#: An HTTP token (RFC 9110): methods and header names.
_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: Bytes that could end a request line or a header (CR, LF, NUL and the other controls).
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
#: What a request target may hold: visible ASCII only.
_TARGET_BAD_RE = re.compile(r"[^\x21-\x7e]")
_HOST_RE = re.compile(r"[0-9A-Za-z.:_-]+")


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    """One HTTP request, ready for the transport (see :meth:`check`)."""

    method: str
    scheme: str
    host: str
    port: int
    target: str
    headers: dict[str, str]
    body: bytes | None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host_header}{self.target}"

    @property
    def host_header(self) -> str:
        """``Host``: the name (never the address connected to), with a non-default port."""
        default = 443 if self.scheme == "https" else 80
        return _bracket(self.host) + ("" if self.port == default else f":{self.port}")

    def check(self) -> None:
        """Refuse anything that could split or smuggle a request (DeliveryError).

        Messages name the header but never show a header value (it may be a secret).
        """
        if not _TOKEN_RE.fullmatch(self.method):
            raise DeliveryError(f"request method {self.method!r} is not an HTTP token")
        if not _HOST_RE.fullmatch(self.host):
            raise DeliveryError(f"host {self.host!r} is not a host name or IP address")
        if not self.target.startswith("/"):
            raise DeliveryError(f"request target {self.target[:80]!r} does not start with '/'")
        bad = _TARGET_BAD_RE.search(self.target)
        if bad is not None:
            raise DeliveryError(
                f"request target refused: {bad.group()!r} at position {bad.start()} could "
                "split the request line"
            )
        for name, value in self.headers.items():
            if not _TOKEN_RE.fullmatch(name):
                raise DeliveryError(f"header name {name!r} is not an HTTP token")
            if _CONTROL_RE.search(value.replace("\t", " ")):
                raise DeliveryError(
                    f"header {name!r} has a CR, LF, NUL or other control character in its "
                    "value: refused, it could split the request"
                )
            try:
                value.encode("latin-1")
            except UnicodeEncodeError:
                raise DeliveryError(
                    f"header {name!r} has a character that HTTP headers cannot carry "
                    "(only ISO-8859-1 text)"
                ) from None


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def split_url(url: str) -> tuple[str, str, str, int, str]:
    """(scheme, userinfo, host, port, target) with the target exactly as written."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    host = _ascii_host(_without_zone(parts.hostname or ""))
    port = parts.port or (443 if scheme == "https" else 80)
    after_authority = url.split("//", 1)[1]
    slash = min((i for i in (after_authority.find(c) for c in "/?") if i >= 0), default=-1)
    target = after_authority[slash:] if slash >= 0 else "/"
    if target.startswith("?"):
        target = "/" + target
    return scheme, userinfo, host, port, _encode_loose(target)


def _without_zone(host: str) -> str:
    """An IPv6 literal without its zone id (``fe80::1%25lo``): the address rules then
    judge the address (link-local is always refused), and no zone is ever sent."""
    address, percent, _zone = host.partition("%")
    if not percent:
        return host
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return host  # not an IPv6 literal: check() refuses it as not a host name
    return address


def _ascii_host(host: str) -> str:
    """An internationalised host name in its IDNA (``xn--``) form."""
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        raise DeliveryError(f"host {host!r} is not a valid internationalised name") from None


def _encode_loose(target: str) -> str:
    """Percent-encode spaces and non-ASCII characters (UTF-8); nothing else changes."""
    if target.isascii() and " " not in target:
        return target
    return "".join(
        ch if ch.isascii() and ch != " " else quote(ch, safe="", errors="surrogatepass")
        for ch in target
    )


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
    token: str | None = None,
) -> OutboundRequest:
    """The request of one attempt: rendered URL, headers, body and signature.

    ``token``: the value of ``%TOKEN%`` (a destination whose auth token goes in its
    URL parameters, see workers/delivery/authed.py); the signature then covers it too.
    """
    values = event.values()
    if token is not None:
        values["TOKEN"] = token
    url = render_url(dest.url, dest.template_for(event.type), values)
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
    request = OutboundRequest(dest.method, scheme, host, port, target, headers, body)
    request.check()
    return request
