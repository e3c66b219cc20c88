"""One attempt to a destination with ``auth``: get a token, send, re-login once on 401.

:func:`send_authed` stands in for :func:`workers.delivery.attempt.send_once` when a
destination has an ``auth`` (``Deliverer._send_limited``). Within the one attempt:

1. the token comes from the process's :class:`~workers.delivery.tokens.TokenCache`, or a
   login through the destination's transport (address rules and TLS options apply);
2. it goes into the token header, or into ``%TOKEN%`` of the URL parameters (the
   request is rebuilt, so its signature covers the token too);
3. a ``401`` from the receiver drops that token, logs in once more and sends once
   more.

A login that fails is the attempt's result: unreachable / 5xx / 429 is retryable (the
circuit counts it like any failed attempt), refused credentials are final (the
notification is dead-lettered with "login failed: ..."). No result, error or response
excerpt holds the token or the credential.
"""

from __future__ import annotations

import dataclasses
import time
from urllib.parse import urlsplit

from producer.events import load_stored_event
from workers.delivery.attempt import AttemptResult, destination_rules, elapsed_ms, send_once
from workers.delivery.tokens import LoginRefused, LoginUnavailable, TokenCache, fetch_token
from workers.destinations.auth import AuthConfig
from workers.destinations.model import Destination
from workers.errors import DeliveryError
from workers.http.netsafety import AddressRules
from workers.http.request import OutboundRequest, build_request
from workers.http.transport import Transport

__all__ = ["send_authed", "with_token"]


def with_token(auth: AuthConfig, request: OutboundRequest, token: str) -> OutboundRequest:
    """``request`` carrying ``token`` in ``auth.token_header`` (header placement)."""
    headers = {k: v for k, v in request.headers.items() if k.lower() != auth.token_header.lower()}
    headers[auth.token_header] = auth.token_prefix + token
    out = dataclasses.replace(request, headers=headers)
    out.check()
    return out


def _rebuilt(dest: Destination, request: OutboundRequest, raw_event: bytes | None,
             token: str) -> OutboundRequest:
    """The attempt's request again, with ``%TOKEN%`` rendered (same id, time, sequence)."""
    if raw_event is None:
        raise DeliveryError("event data not found in Redis (expired or lost)")
    seq = request.headers.get("X-Recnotify-Sequence")
    out = build_request(load_stored_event(raw_event), dest, nid=request.headers["webhook-id"],
                        now_s=float(request.headers["webhook-timestamp"]),
                        sequence=int(seq) if seq is not None else None, token=token)
    if "traceparent" in request.headers:  # the attempt span's (workers/config/telemetry.py)
        out.headers["traceparent"] = request.headers["traceparent"]
    return out


def _where(auth: AuthConfig) -> str:
    parts = urlsplit(auth.url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _mask(text: str | None, secrets: list[str]) -> str | None:
    if not text:
        return text
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, "****")
    return text


def send_authed(transport: Transport, global_rules: AddressRules, dest: Destination,
                request: OutboundRequest, tokens: TokenCache, raw_event: bytes | None
                ) -> AttemptResult:
    """Send ``request`` to ``dest`` with its auth's token (see the module's words)."""
    auth = dest.auth
    if auth is None:
        return send_once(transport, global_rules, dest, request)
    key = auth.cache_key(dest.name)
    rules = destination_rules(global_rules, dest.allow_cidrs, dest.deny_cidrs)
    started = time.perf_counter()
    used: list[str] = []

    def fetch() -> tuple[str, float | None]:
        return fetch_token(transport, auth, rules=rules, tls=dest.tls, timeout_s=dest.timeout_s)

    def attempt() -> AttemptResult:
        try:
            token = tokens.get(key, fetch)
        except LoginRefused as exc:
            return AttemptResult(None, f"login failed ({_where(auth)}): {exc}",
                                 elapsed_ms(started), retryable=False)
        except LoginUnavailable as exc:
            return AttemptResult(None, f"login failed ({_where(auth)}): endpoint unavailable: "
                                 f"{exc}", elapsed_ms(started), retryable=True)
        used.append(token)
        try:
            sendable = (_rebuilt(dest, request, raw_event, token) if auth.in_params
                        else with_token(auth, request, token))
        except DeliveryError as exc:
            return AttemptResult(None, str(exc), elapsed_ms(started), retryable=False)
        return send_once(transport, global_rules, dest, sendable)

    result = attempt()
    if result.status == 401 and used:
        tokens.invalidate(key, used[-1])  # refused: log in afresh, once, and send again
        result = attempt()
        if result.status == 401:
            result = dataclasses.replace(result, error="HTTP 401 (also with a fresh token)")
    secrets = [*used, auth.credential]
    return dataclasses.replace(result, error=_mask(result.error, secrets),
                               response=_mask(result.response, secrets) or "")
