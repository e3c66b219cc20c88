"""Tokens of destinations with ``auth`` (issue 18): fetched, cached, refreshed.

* :class:`TokenCache` -- per worker process, in memory only (never Redis, logs, task
  arguments or Flower), keyed by :meth:`AuthConfig.cache_key` (destination name and a
  hash of its auth). A token is refreshed before it expires (:func:`refresh_at`); one
  login runs at a time per key, so a burst of notifications logs in once.
* :func:`login_request` / :func:`parse_login_answer` -- pure: the token request of an
  ``auth`` and what its answer means. OAuth2 client credentials use ``oauthlib``
  (``BackendApplicationClient``: the request body, ``parse_request_body_response``:
  the answer, RFC 6749 section 4.4); ``login_form`` parses the FACE ``<result>`` XML.
* :func:`fetch_token` -- sends the token request through the destination's own
  :class:`~workers.http.transport.Transport` (address rules, TLS options), never a bare
  HTTP client.

Errors: :class:`LoginRefused` (the endpoint answered no: bad credentials, final) and
:class:`LoginUnavailable` (down, timeout, 5xx, 429: a failed attempt, retried with
backoff and counted by the circuit). Their messages never hold the credential or a
token.
"""

from __future__ import annotations

import base64
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import urllib3.exceptions
from oauthlib.oauth2 import BackendApplicationClient, OAuth2Error

from workers import __version__
from workers.delivery.attempt import describe
from workers.destinations.auth import OAUTH2, AuthConfig
from workers.errors import DeliveryError, RecnotifyError, RefusedAddress
from workers.http.netsafety import AddressRules
from workers.http.request import OutboundRequest, split_url
from workers.http.tls import TlsOptions
from workers.http.transport import Transport

__all__ = [
    "DEFAULT_LIFETIME_S",
    "LoginRefused",
    "LoginUnavailable",
    "Token",
    "TokenCache",
    "fetch_token",
    "login_request",
    "parse_face_login",
    "parse_login_answer",
    "parse_oauth2_token",
    "refresh_at",
]

#: Lifetime assumed when the endpoint does not say (OAuth2 without ``expires_in``).
DEFAULT_LIFETIME_S = 300.0
#: A token is refreshed this long before its expiry at most ...
REFRESH_MARGIN_S = 30.0
#: ... and at the latest at this share of its lifetime (short-lived tokens).
REFRESH_SHARE = 0.9
#: A refused login is remembered this long: the notifications meanwhile are refused
#: without asking again (a burst must not lock the account with wrong passwords). The
#: cache key holds the credential, so correcting it logs in at once.
REFUSAL_HOLD_S = 60.0
#: Longest login answer parsed (the transport reads at most 64 KiB anyway).
MAX_LOGIN_BODY = 64 * 1024
USER_AGENT = f"recnotify/{__version__}"


class LoginRefused(RecnotifyError):
    """The login / token endpoint refused the credentials (final: no retry helps)."""


class LoginUnavailable(RecnotifyError):
    """The login / token endpoint could not be reached or failed (retryable)."""


@dataclass(frozen=True, slots=True)
class Token:
    value: str
    refresh_at: float
    expires_at: float

    def __repr__(self) -> str:
        return f"Token(********, refresh_at={self.refresh_at}, expires_at={self.expires_at})"


def refresh_at(issued_at: float, lifetime_s: float) -> float:
    """When a token issued at ``issued_at`` for ``lifetime_s`` is fetched again: at 90 %
    of its lifetime, or 30 s before it expires when that is earlier (but never before
    half its lifetime: a 40 s token is used for 20 s)."""
    early = max(lifetime_s - REFRESH_MARGIN_S, 0.5 * lifetime_s)
    return issued_at + max(0.0, min(REFRESH_SHARE * lifetime_s, early))


# -- the token request and its answer (pure) -----------------------------------------------

def login_request(auth: AuthConfig) -> OutboundRequest:
    """The POST that asks ``auth``'s endpoint for a token (form-encoded)."""
    headers = {"User-Agent": USER_AGENT, "Content-Type": "application/x-www-form-urlencoded"}
    if auth.type == OAUTH2:
        client = BackendApplicationClient(auth.user)
        if auth.client_auth == "post":
            body = client.prepare_request_body(scope=auth.scope, include_client_id=True,
                                               client_secret=auth.credential)
        else:  # RFC 6749 2.3.1: form-encoded id and secret in HTTP Basic
            body = client.prepare_request_body(scope=auth.scope)
            pair = f"{quote(auth.user, safe='')}:{quote(auth.credential, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        headers["Accept"] = "application/json"
    else:
        fields = {auth.username_field: auth.user, auth.password_field: auth.credential}
        if auth.expiration_s is not None:
            fields[auth.expiration_field] = str(auth.expiration_s)
        body = urlencode(fields)
        headers["Accept"] = "application/xml, text/xml"
    scheme, _userinfo, host, port, target = split_url(auth.url)
    request = OutboundRequest("POST", scheme, host, port, target, headers, body.encode("utf-8"))
    request.check()
    return request


def parse_oauth2_token(body: bytes, scope: str | None) -> tuple[str, float | None]:
    """(access token, lifetime in seconds or None) from a token endpoint's answer.

    oauthlib checks it: an ``error`` member raises its OAuth2Error, no
    ``access_token`` raises MissingTokenError (both :class:`LoginRefused` here). A
    narrower scope than asked is accepted (the server decides what it grants).
    """
    client = BackendApplicationClient("recnotify")
    try:
        token: Any = client.parse_request_body_response(body.decode("utf-8", "replace"),
                                                        scope=scope)
    except OAuth2Error as exc:
        detail = (exc.error or "error") + (f": {exc.description}" if exc.description else "")
        raise LoginRefused(f"token endpoint refused: {detail[:200]}") from None
    except Warning as exc:  # the scope changed: oauthlib hands over the token it parsed
        token = getattr(exc, "token", None)
        if token is None:
            raise LoginRefused(f"token endpoint answer not accepted: {exc}") from None
    value = token.get("access_token")
    if not isinstance(value, str) or not value:
        raise LoginRefused("token endpoint answer has no access_token")
    lifetime = token.get("expires_in")
    return value, float(lifetime) if isinstance(lifetime, int | float) and lifetime > 0 else None


def parse_face_login(body: bytes) -> tuple[str, float | None]:
    """(token, lifetime in seconds or None) from a FACE login answer::

        <result><code>0</code><message>ACK</message><token>...</token>
        <expiration>3600seconds</expiration></result>

    A non-zero ``code`` or no token is :class:`LoginRefused` (with the code and
    message). Hostile bodies: at most 64 KiB, and no DTD at all (no entity can
    expand or fetch anything).
    """
    if len(body) > MAX_LOGIN_BODY:
        raise LoginRefused(f"login answer of {len(body)} bytes, over {MAX_LOGIN_BODY}: refused")
    if b"<!DOCTYPE" in body.upper() or b"<!ENTITY" in body.upper():
        raise LoginRefused("login answer has a DTD or entities: refused")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise LoginRefused(f"login answer is not XML ({exc})") from None
    code = (root.findtext("code") or "").strip()
    message = (root.findtext("message") or "").strip()[:120]
    token = (root.findtext("token") or "").strip()
    if code != "0":
        raise LoginRefused(f"login answered code {code[:20] or '(none)'}"
                           + (f" ({message})" if message else ""))
    if not token:
        raise LoginRefused("login answered code 0 but no token")
    return token, _seconds((root.findtext("expiration") or "").strip())


def _seconds(text: str) -> float | None:
    """``3600seconds`` / ``3600`` -> 3600.0; anything else None."""
    digits = ""
    for ch in text:
        if not ch.isdigit():
            break
        digits += ch
    return float(digits) if digits and int(digits) > 0 else None


def parse_login_answer(auth: AuthConfig, status: int, body: bytes) -> tuple[str, float | None]:
    """What the endpoint's answer means: a token (with its lifetime), or an error.

    5xx, 408 and 429 are :class:`LoginUnavailable` (try again later); other non-2xx
    statuses are :class:`LoginRefused`, except an OAuth2 error body (400/401), which
    oauthlib reads for its error code.
    """
    if status >= 500 or status in (408, 429):
        raise LoginUnavailable(f"answered HTTP {status}")
    if auth.type == OAUTH2:
        if not 200 <= status < 300 and b"error" not in body:
            raise LoginRefused(f"token endpoint answered HTTP {status}")
        return parse_oauth2_token(body, auth.scope)
    if not 200 <= status < 300:
        raise LoginRefused(f"login answered HTTP {status}")
    return parse_face_login(body)


# -- sending it ------------------------------------------------------------------------------

def fetch_token(transport: Transport, auth: AuthConfig, *, rules: AddressRules,
                tls: TlsOptions, timeout_s: float) -> tuple[str, float | None]:
    """Ask ``auth``'s endpoint for a token through ``transport`` (its address rules and
    TLS options apply); :class:`LoginRefused` or :class:`LoginUnavailable` otherwise."""
    try:
        response = transport.send(login_request(auth), timeout_s=timeout_s, rules=rules,
                                  tls=tls)
    except RefusedAddress as exc:
        raise LoginRefused(str(exc)) from None
    except DeliveryError as exc:
        raise LoginUnavailable(str(exc)) from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise LoginUnavailable(describe(exc)) from None
    return parse_login_answer(auth, response.status, response.body)


class TokenCache:
    """Tokens by cache key, in this process's memory only; thread-safe.

    :meth:`get` returns a live token or fetches one (one fetch at a time per key:
    the others wait for it and use its token). A :class:`LoginRefused` is remembered for
    REFUSAL_HOLD_S and raised again without a login. ``clock`` is injectable for tests.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[str, Token] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._refused: dict[str, tuple[float, str]] = {}
        #: Logins made, per key (what the tests and a curious operator read).
        self.fetches: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"TokenCache({len(self._tokens)} tokens)"

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def peek(self, key: str) -> Token | None:
        """The cached token of ``key`` if it is not due for a refresh."""
        token = self._tokens.get(key)
        if token is not None and self._clock() < token.refresh_at:
            return token
        return None

    def get(self, key: str, fetch: Callable[[], tuple[str, float | None]]) -> str:
        token = self.peek(key)
        if token is not None:
            return token.value
        with self._lock(key):
            token = self.peek(key)  # fetched by another thread meanwhile
            if token is not None:
                return token.value
            until, why = self._refused.get(key, (0.0, ""))
            if self._clock() < until:
                raise LoginRefused(f"{why} (not asked again for {REFUSAL_HOLD_S:g} s after a "
                                   "refusal, unless the credentials change)")
            try:
                value, lifetime = fetch()
            except LoginRefused as exc:
                self._refused[key] = (self._clock() + REFUSAL_HOLD_S, str(exc))
                self.fetches[key] = self.fetches.get(key, 0) + 1
                raise
            self._refused.pop(key, None)
            self.fetches[key] = self.fetches.get(key, 0) + 1
            now = self._clock()
            life = lifetime if lifetime is not None else DEFAULT_LIFETIME_S
            self._tokens[key] = Token(value, refresh_at(now, life), now + life)
            return value

    def invalidate(self, key: str, value: str) -> None:
        """Forget ``key``'s token if it is still ``value`` (a receiver refused it)."""
        with self._guard:
            token = self._tokens.get(key)
            if token is not None and token.value == value:
                del self._tokens[key]
