"""Bearer-token authentication of the ``/api`` routes, and who made a change.

With a token configured every ``/api`` call must carry ``Authorization: Bearer
TOKEN`` (compared in constant time). Without one the service only runs on a
loopback address (see :mod:`workers.cli_admin`) and the API is open; the audit
log then names the actor ``open``.
"""

from __future__ import annotations

import hmac
import ipaddress
from dataclasses import dataclass

from fastapi import Request

from workers.admin.errors import ApiError

__all__ = ["Actor", "is_loopback", "require_token", "token_matches"]

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


def require_token(request: Request) -> Actor:
    """FastAPI dependency: the caller, or 401 when the token is configured and not given."""
    token: str | None = request.app.state.admin.token
    remote = request.client.host if request.client else None
    if not token:
        return Actor("open", remote)
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token_matches(given.strip(), token):
        raise ApiError(401, "authorization", UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
    return Actor("token", remote)
