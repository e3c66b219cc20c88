"""Checks of a destination's option fields, and the error collector they share.

Used by :mod:`workers.destinations.rules`; each check records a FieldError whose
message names the destination, the field and the bad value (secrets masked).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from typing import Any

from workers.destinations.backoff import RetryPolicy
from workers.destinations.expiry import MAX_EXPIRE_AFTER_S
from workers.destinations.model import MASK, CircuitOptions, Destination, Header, TlsOptions
from workers.destinations.values import is_number, show
from workers.errors import FieldError
from workers.http.netsafety import parse_cidrs
from workers.http.signing import validate_secret

_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: Headers recnotify sets itself (compared lower case); a destination may not override them.
RESERVED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "user-agent",
     "webhook-id", "webhook-timestamp", "webhook-signature"}
)


class Checker:
    """Collects the errors of one destination."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.errors: list[FieldError] = []

    def fail(self, field: str, value: Any, problem: str) -> None:
        self.errors.append(
            FieldError(field, value, f"destination {self.label}: {field}: {problem}")
        )

    def typed(
        self,
        data: Mapping[str, Any],
        key: str,
        default: Any,
        ok: Callable[[Any], bool],
        expected: str,
        where: str | None = None,
    ) -> Any:
        """``data[key]`` when ``ok`` accepts it, else ``default`` (after an error)."""
        value = data.get(key, default)
        if value is default or ok(value):
            return value
        self.fail(where or key, value, f"{show(value)} is not {expected}")
        return default

    def no_unknown(self, data: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = (
                    f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(known)})"
                )
                self.fail(f"{where}{key}", key, f"unknown field {key!r}{hint}")



def check_headers(c: Checker, value: Any, existing: Destination | None) -> tuple[Header, ...]:
    if not isinstance(value, Mapping):
        c.fail("headers", value, f"{show(value)} is not a map of header NAME: value")
        return ()
    stored = {h.name.lower(): h for h in existing.headers} if existing is not None else {}
    out: list[Header] = []
    seen: set[str] = set()
    for name, spec in value.items():
        field = f"headers.{name}"
        secret = isinstance(spec, Mapping) and spec.get("secret") is True
        masked = isinstance(spec, Mapping) and spec.get("secret") not in (None, False)
        item = spec.get("value") if isinstance(spec, Mapping) else spec
        shown = MASK if masked else show(item)
        if not isinstance(name, str) or not _TOKEN_RE.fullmatch(name):
            c.fail(
                field,
                name,
                f"{show(name)} is not a valid HTTP header name (letters, digits "
                "and !#$%&'*+-.^_`|~ only)",
            )
            continue
        low = name.lower()
        if low in RESERVED_HEADERS or low.startswith("x-recnotify-"):
            c.fail(field, name, f"{name!r} is set by recnotify and cannot be overridden")
        elif low in seen:
            c.fail(field, name, f"{name!r} is given twice (header names ignore case)")
        seen.add(low)
        if isinstance(spec, Mapping):
            c.no_unknown(spec, ("value", "secret"), f"{field}.")
            if not isinstance(spec.get("secret", False), bool):
                c.fail(f"{field}.secret", spec.get("secret"), "must be true or false")
        if secret and item == MASK:
            old = stored.get(low)
            if old is None or not old.secret:
                c.fail(field, MASK, "masked value but no stored secret value to keep: give it")
                continue
            item = old.value
        if not isinstance(item, str) or any(ch in item for ch in "\r\n\0"):
            c.fail(
                field,
                MASK if masked else item,
                f"{shown} is not a header value (a string without CR, LF or NUL)",
            )
            continue
        out.append(Header(name, item, secret))
    return tuple(out)


def check_secret(c: Checker, data: Mapping[str, Any], existing: Destination | None) -> str | None:
    stored = existing.secret if existing is not None else None
    if "secret" not in data:
        return stored
    value = data["secret"]
    if value is None:
        return None
    if value == MASK:
        if stored is None:
            c.fail(
                "secret",
                MASK,
                "masked value but no stored secret to keep: give the secret "
                "(whsec_ + base64 of 24-64 random bytes) or null",
            )
        return stored
    if not isinstance(value, str):
        c.fail("secret", MASK, "is not a string (expected whsec_ + base64 of 24-64 bytes)")
        return None
    try:
        validate_secret(value)
    except ValueError as exc:
        c.fail(
            "secret",
            MASK,
            f"{exc} (generate one with: python -c "
            "'from workers.http.signing import generate_secret; print(generate_secret())')",
        )
    return value


def check_cidrs(c: Checker, data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key)
    try:
        return tuple(str(n) for n in parse_cidrs(value, where=f"destination {c.label}: {key}"))
    except (ValueError, TypeError) as exc:
        c.errors.append(FieldError(key, value, str(exc)))
        return ()


def check_tls(c: Checker, value: Any) -> TlsOptions:
    if not isinstance(value, Mapping):
        c.fail(
            "tls",
            value,
            f"{show(value)} is not a map (verify, ca_bundle, client_cert, client_key)",
        )
        return TlsOptions()
    c.no_unknown(value, ("verify", "ca_bundle", "client_cert", "client_key"), "tls.")
    is_path: Callable[[Any], bool] = lambda v: v is None or (isinstance(v, str) and v != "")  # noqa: E731
    paths = [
        c.typed(value, k, None, is_path, "a file path", f"tls.{k}")
        for k in ("ca_bundle", "client_cert", "client_key")
    ]
    verify = c.typed(
        value, "verify", True, lambda v: isinstance(v, bool), "true or false", "tls.verify"
    )
    if paths[2] is not None and paths[1] is None:
        c.fail("tls.client_key", paths[2], "client_key needs client_cert")
    return TlsOptions(verify, *paths)


def check_circuit(c: Checker, value: Any) -> CircuitOptions:
    if not isinstance(value, Mapping):
        c.fail("circuit", value, f"{show(value)} is not a map (failures, reset_s)")
        return CircuitOptions()
    c.no_unknown(value, ("failures", "reset_s"), "circuit.")
    failures = c.typed(
        value,
        "failures",
        5,
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "an integer >= 1",
        "circuit.failures",
    )
    reset_s = c.typed(
        value,
        "reset_s",
        30.0,
        lambda v: is_number(v) and v > 0,
        "a number of seconds > 0",
        "circuit.reset_s",
    )
    return CircuitOptions(failures, float(reset_s))


def check_retry(c: Checker, value: Any) -> RetryPolicy:
    if not isinstance(value, Mapping):
        c.fail(
            "retry",
            value,
            f"{show(value)} is not a map (max_attempts, backoff_s, backoff_max_s, policy)",
        )
        return RetryPolicy()
    keys = ("max_attempts", "backoff_s", "backoff_max_s", "policy")
    c.no_unknown(value, keys, "retry.")
    given = {k: value[k] for k in keys if k in value}
    huge = [k for k, v in given.items()
            if isinstance(v, int) and not isinstance(v, bool) and not is_number(v)]
    for k in huge:  # past float range: RetryPolicy's arithmetic would raise OverflowError
        c.fail(f"retry.{k}", given[k], f"{show(given[k])} is too large a number")
    if huge:
        return RetryPolicy()
    try:
        policy = RetryPolicy(**given)
    except (ValueError, TypeError) as exc:
        bad = next((k for k in keys if f"retry.{k}" in str(exc)), "retry")
        field = f"retry.{bad}" if bad != "retry" else "retry"
        c.errors.append(FieldError(field, given.get(bad, value), f"destination {c.label}: {exc}"))
        return RetryPolicy()
    if is_number(policy.backoff_s) and is_number(policy.backoff_max_s):
        return RetryPolicy(
            policy.max_attempts, float(policy.backoff_s), float(policy.backoff_max_s), policy.policy
        )
    return policy


def check_expire_after(c: Checker, value: Any, events: tuple[str, ...], *,
                       from_preset: bool = False) -> float | dict[str, float] | None:
    """``expire_after_s``: seconds in (0, 7 days], or a map from one of the destination's
    event types to such seconds (an empty map: none). A preset's map keeps only the
    destination's events (the user may have narrowed them)."""
    expected = f"a number of seconds in (0, {MAX_EXPIRE_AFTER_S:g}] (7 days)"

    def seconds(field: str, item: Any) -> float | None:
        if is_number(item) and 0 < item <= MAX_EXPIRE_AFTER_S:
            return float(item)
        c.fail(field, item, f"{show(item)} is not {expected}")
        return None

    if value is None:
        return None
    if not isinstance(value, Mapping):
        if is_number(value) and 0 < value <= MAX_EXPIRE_AFTER_S:
            return float(value)
        c.fail("expire_after_s", value, f"{show(value)} is not {expected}, nor a map from "
               "event type to seconds (e.g. {RECORDING_STARTED_EVENT: 120})")
        return None
    out: dict[str, float] = {}
    for key, item in value.items():
        field = f"expire_after_s.{key}"
        if key not in events:
            if not from_preset:
                c.fail(field, key, f"{show(key)} is not one of this destination's events "
                       f"({', '.join(events) or 'none'})")
            continue
        limit = seconds(field, item)
        if limit is not None:
            out[key] = limit
    return out or None
