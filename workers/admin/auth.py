"""Bearer-token authentication of the ``/api`` routes, and who made a change.

With a token configured every ``/api`` call must carry ``Authorization: Bearer
TOKEN`` (compared in constant time). Without one the service only runs on a
loopback address (see :mod:`workers.cli.admin`) and the API is open; the audit
log then names the actor ``open``.

The audit log's ``remote_addr`` is the peer's address; ``X-Forwarded-For`` is
believed only when the peer is one of ``RECNOTIFY_TRUSTED_PROXIES``, and then
the client is the rightmost address in it that is not itself a trusted proxy.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import Request

from workers.admin.errors import ApiError

__all__ = ["Actor", "Networks", "client_address", "is_loopback", "parse_trusted_proxies",
           "require_token", "token_matches"]

Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]

UNAUTHORIZED = ("missing or wrong bearer token: send `Authorization: Bearer "
                "$RECNOTIFY_ADMIN_TOKEN`")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is calling, for the audit log: ``token`` or ``open``, and from where."""

    name: str
    remote_addr: str | None


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def parse_trusted_proxies(value: str | Sequence[str] | None) -> Networks:
    """``RECNOTIFY_TRUSTED_PROXIES`` (addresses or CIDRs, comma separated) as networks.

    Raises ValueError naming the bad entry and the expected form.
    """
    items = value.split(",") if isinstance(value, str) else list(value or ())
    out: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"RECNOTIFY_TRUSTED_PROXIES: {item!r} is not an IP address or "
                             "CIDR (e.g. 10.0.0.5,10.1.0.0/16)") from None
    return tuple(out)


def _in(address: str, networks: Networks) -> bool:
    try:
        ip = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_address(request: Request, trusted: Networks) -> str | None:
    """Who is calling: the peer, or the client a trusted proxy forwarded for."""
    peer = request.client.host if request.client else None
    if peer is None or not trusted or not _in(peer, trusted):
        return peer
    hops = [h.strip() for v in request.headers.getlist("x-forwarded-for") for h in v.split(",")]
    client = peer
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop.strip("[]"))
        except ValueError:
            break  # a malformed hop: believe nothing beyond it
        client = hop.strip("[]")
        if not _in(hop, trusted):
            break
    return client


def require_token(request: Request) -> Actor:
    """FastAPI dependency: the caller, or 401 when the token is configured and not given."""
    token: str | None = request.app.state.admin.token
    remote = client_address(request, request.app.state.admin.trusted_proxies)
    if not token:
        return Actor("open", remote)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token_matches(given.strip(), token):
        raise ApiError(401, "authorization", UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
    return Actor("token", remote)
