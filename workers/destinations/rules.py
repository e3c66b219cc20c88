"""``parse_destination``: presets, defaults and every SPEC 4 rule, all errors at once.

Each refused field becomes one :class:`~workers.errors.FieldError` whose message
names the destination, the field and the bad value; secret values are never
quoted (they appear as ``********``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from producer.events import EVENT_TYPES, RESULTS, params_for
from workers.destinations.auth import TOKEN_PLACEHOLDER
from workers.destinations.auth_checks import check_auth
from workers.destinations.checks import (
    Checker,
    check_cidrs,
    check_circuit,
    check_expire_after,
    check_headers,
    check_retry,
    check_secret,
    check_tls,
)
from workers.destinations.filters import Filter, InvalidFilter, compile_filter
from workers.destinations.model import MASK, PRESETS, Destination, mask_userinfo, url_userinfo
from workers.destinations.schema import DestinationIn
from workers.destinations.values import is_number, show
from workers.errors import FieldError, InvalidDestination
from workers.http.templates import MAX_URL_BYTES, placeholders

__all__ = ["FIELDS", "parse_destination"]

FIELDS: tuple[str, ...] = (
    "name",
    "preset",
    "events",
    "scope",
    "url",
    "params",
    "method",
    "results",
    "headers",
    "secret",
    "timeout_s",
    "tls",
    "allow_cidrs",
    "deny_cidrs",
    "circuit",
    "retry",
    "rate_limit_per_s",
    "max_in_flight",
    "ordered",
    "on_dead_letter",
    "expire_after_s",
    "enabled",
    "auth",
    "filter",
)
MAX_NAME_CHARS = 100
#: Longest text in any field (a URL or a template can never render over 8 KiB).
MAX_TEXT_CHARS = MAX_URL_BYTES
#: Most items in any list or map of a destination (events, headers, params, CIDRs).
MAX_ITEMS = 256
#: Deepest nesting of lists and maps in a destination, and most values in all of it.
MAX_DEPTH = 6
MAX_VALUES = 10_000
MAX_TIMEOUT_S = 60.0
SCOPE_KINDS = ("route", "account", "realm")


def parse_destination(
    data: Mapping[str, Any], *, existing: Destination | None = None
) -> Destination:
    """A validated :class:`Destination` from the SPEC 4 fields in ``data``.

    With ``existing`` (an update), a missing or masked ``secret``, a masked
    secret header value and a masked URL userinfo keep the stored ones, and
    ``old_secrets`` carry over; ``secret: None`` clears the secret.
    Raises :class:`InvalidDestination` listing every refused field.
    """
    if not isinstance(data, Mapping):
        raise InvalidDestination(
            None,
            [FieldError("", data, f"a destination must be a mapping of fields, got {show(data)}")],
        )
    raw_name = data.get("name")
    c = Checker(show(raw_name) if isinstance(raw_name, str) and raw_name else "(unnamed)")
    _bounds(c, data)
    if c.errors:  # refused before any check quotes or walks an oversized value
        raise InvalidDestination(None, c.errors)
    c.no_unknown(data, FIELDS, "")
    name = _name(c, raw_name)
    preset = c.typed(
        data,
        "preset",
        None,
        lambda v: isinstance(v, str) and v in PRESETS,
        f"a known preset (expected one of {', '.join(PRESETS)})",
    )
    merged: dict[str, Any] = {**PRESETS.get(preset or "", {}), **data}
    events, all_events = _events(c, merged.get("events"))
    scope = _scope(c, merged.get("scope", "global"))
    url = _url(c, merged.get("url"), existing)
    auth = check_auth(c, merged.get("auth"), existing.auth if existing is not None else None)
    params = _params(c, merged.get("params", ""), events,
                     token=auth is not None and auth.in_params)
    method = c.typed(merged, "method", "GET", lambda v: v in ("GET", "POST"), "'GET' or 'POST'")
    results = _results(c, merged.get("results", list(RESULTS)))
    headers = check_headers(c, merged.get("headers", {}), existing)
    if auth is not None and not auth.in_params and any(
            h.name.lower() == auth.token_header.lower() for h in headers):
        c.fail(f"headers.{auth.token_header}", auth.token_header, "the auth's token goes in "
               "this header: remove the header, or set auth.token_header to another one")
    if (auth is not None and not auth.in_params and url_userinfo(url) is not None
            and auth.token_header.lower() == "authorization"):
        c.fail("url", mask_userinfo(url), "user:password@ (Basic) and the auth's token both "
               "go in Authorization: remove user:password@, or set auth.token_header")
    secret = check_secret(c, data, existing)
    timeout_s = c.typed(
        merged,
        "timeout_s",
        10.0,
        lambda v: is_number(v) and 0 < v <= MAX_TIMEOUT_S,
        f"a number of seconds in (0, {MAX_TIMEOUT_S:g}]",
    )
    allow_cidrs = check_cidrs(c, merged, "allow_cidrs")
    deny_cidrs = check_cidrs(c, merged, "deny_cidrs")
    rate = c.typed(
        merged, "rate_limit_per_s", None, lambda v: is_number(v) and v > 0, "a number > 0 or null"
    )
    in_flight = c.typed(
        merged,
        "max_in_flight",
        None,
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "an integer >= 1 or null",
    )
    is_bool: Callable[[Any], bool] = lambda v: isinstance(v, bool)  # noqa: E731
    ordered = c.typed(merged, "ordered", False, is_bool, "true or false")
    enabled = c.typed(merged, "enabled", True, is_bool, "true or false")
    on_dead = c.typed(
        merged,
        "on_dead_letter",
        "continue",
        lambda v: v in ("continue", "hold"),
        "'continue' or 'hold'",
    )
    expire_after_s = check_expire_after(c, merged.get("expire_after_s"), events,
                                        from_preset="expire_after_s" not in data)
    tls = check_tls(c, merged.get("tls", {}))
    circuit = check_circuit(c, merged.get("circuit", {}))
    retry = check_retry(c, merged.get("retry", {}))
    filter_ = _filter(c, merged.get("filter"), events)
    if not c.errors:
        model_errors(c, data)  # the model the OpenAPI document and the file schema show
    if c.errors:
        raise InvalidDestination(name or None, c.errors)
    old_secrets = existing.old_secrets if existing is not None and secret is not None else ()
    return Destination(
        name=name,
        events=events,
        scope=scope,
        url=url,
        params=params,
        method=method,
        results=results,
        headers=headers,
        secret=secret,
        old_secrets=old_secrets,
        timeout_s=float(timeout_s),
        tls=tls,
        allow_cidrs=allow_cidrs,
        deny_cidrs=deny_cidrs,
        circuit=circuit,
        retry=retry,
        rate_limit_per_s=None if rate is None else float(rate),
        max_in_flight=in_flight,
        ordered=ordered,
        on_dead_letter=on_dead,
        expire_after_s=expire_after_s,
        enabled=enabled,
        preset=preset,
        all_events=all_events,
        auth=auth,
        filter=filter_,
    )


def _bounds(c: Checker, data: Mapping[str, Any]) -> None:
    """Every text at most MAX_TEXT_CHARS, every list or map at most MAX_ITEMS, nesting
    at most MAX_DEPTH and MAX_VALUES values in all; the first excess is the error."""
    budget = [MAX_VALUES]

    def walk(value: Any, where: str, depth: int) -> bool:
        budget[0] -= 1
        if budget[0] < 0:
            c.fail(where or "destination", None,
                   f"more than {MAX_VALUES:,} values in all, over the limit")
            return False
        if isinstance(value, str):
            if len(value) > MAX_TEXT_CHARS:
                c.fail(where, None, f"{len(value):,} characters, over the limit of "
                       f"{MAX_TEXT_CHARS:,}")
                return False
            return True
        if not isinstance(value, Mapping | list | tuple):
            return True
        if depth >= MAX_DEPTH:
            c.fail(where, None, f"nested deeper than {MAX_DEPTH} levels, over the limit")
            return False
        if len(value) > MAX_ITEMS:
            c.fail(where, None, f"{len(value):,} items, over the limit of {MAX_ITEMS}")
            return False
        if isinstance(value, Mapping):
            for key, item in value.items():
                name = str(key)[:40] if isinstance(key, str) else type(key).__name__
                inner = f"{where}.{name}" if where else name
                if not (walk(key, inner, depth + 1) and walk(item, inner, depth + 1)):
                    return False
            return True
        return all(walk(item, f"{where}[{n}]", depth + 1) for n, item in enumerate(value))

    # a filter has its own limits (workers.destinations.filters: deeper nesting, fewer values)
    walk({k: v for k, v in data.items() if k != "filter"}, "", 0)


def _name(c: Checker, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        c.fail("name", value, f"{show(value)} is not a name (give 1-{MAX_NAME_CHARS} characters)")
        return ""
    if len(value) > MAX_NAME_CHARS or value != value.strip() or any(ch < " " for ch in value):
        c.fail(
            "name",
            value,
            f"{show(value)} must be 1-{MAX_NAME_CHARS} characters without "
            "surrounding spaces or control characters",
        )
    return value


def _events(c: Checker, value: Any) -> tuple[tuple[str, ...], bool]:
    expected = f"expected one of {', '.join(EVENT_TYPES)} or all"
    if value == "all":
        return EVENT_TYPES, True
    if not isinstance(value, list | tuple) or not value:
        c.fail("events", value, f"{show(value)} is not a list of event types ({expected})")
        return (), False
    good: list[str] = []
    for item in value:
        if item not in EVENT_TYPES:
            c.fail("events", item, f"unknown event type {show(item)} ({expected})")
        elif item not in good:
            good.append(item)
    return tuple(good), False


def _scope(c: Checker, value: Any) -> str:
    if value == "global":
        return "global"
    text = value if isinstance(value, str) else ""
    kind, sep, name = text.partition(":")
    if sep and kind in SCOPE_KINDS and name and name == name.strip():
        return text
    c.fail(
        "scope",
        value,
        f"{show(value)} is not a scope (expected global, route:NAME, account:NAME or realm:NAME)",
    )
    return "global"


def _url(c: Checker, given: Any, existing: Destination | None) -> str:
    if not isinstance(given, str) or not given:
        c.fail(
            "url",
            given,
            f"{show(given)} is not a URL (url is required, e.g. https://host:8443/path)",
        )
        return ""
    value: str = given
    userinfo = url_userinfo(value)
    if userinfo == MASK:
        stored = url_userinfo(existing.url) if existing is not None else None
        if stored is None:
            c.fail(
                "url",
                mask_userinfo(value),
                "masked credentials (********@) but no stored ones to keep: give user:password",
            )
            return value
        if existing is not None and _host(existing.url) != _host(value):
            c.fail(
                "url",
                value,
                "masked credentials (********@) are kept only for the same host:port; "
                "give user:password for the new host",
            )
            return value
        value = mask_userinfo(value, stored)
    masked, delimiter = _masked_url(value)
    shown = show(masked)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        # the parser's words may quote a piece of a password that ended the host early
        why = ("a '/', '?' or '#' in its user name or password must be percent-encoded "
               "(%2F, %3F, %23)") if delimiter else str(exc)
        c.fail("url", masked, f"{shown} is not a valid URL ({why})")
        return value
    if parts.scheme not in ("http", "https") or not parts.hostname:
        c.fail(
            "url",
            masked,
            f"{shown} is not an absolute http(s) URL (e.g. https://host:8443/path)",
        )
    elif "#" in value:
        c.fail("url", masked, f"{shown} has a #fragment, which is never sent: remove it")
    elif any(ch <= " " or ch == "\x7f" for ch in value):
        c.fail(
            "url",
            masked,
            f"{shown} contains spaces or control characters (percent-encode them)",
        )
    return value


def _masked_url(url: str) -> tuple[str, bool]:
    """``url`` as a message may show it, and whether it may hold a userinfo with an
    unencoded ``/``, ``?`` or ``#`` (an ``@`` after one of them).

    Such a delimiter ends the authority early (``https://user:pa/ss@host/``: host
    ``user``, port ``pa``), so the userinfo is not found where it belongs; all up to
    the last ``@`` is masked then, never echoed (an ``@`` in a path is masked too:
    a message may hide too much, never a password).
    """
    if url_userinfo(url) is not None:
        return mask_userinfo(url), False
    scheme_end = url.find("//")
    rest = url[scheme_end + 2:] if scheme_end >= 0 else ""
    at = rest.rfind("@")
    if at < 0 or not any(ch in rest[:at] for ch in "/?#"):
        return url, False
    return f"{url[:scheme_end + 2]}{MASK}{rest[at:]}", True


def _host(url: str) -> str:
    """``host:port`` of ``url`` (without userinfo), lower case."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:  # an unclosed "[": compared as written (the URL is refused anyway)
        netloc = url.partition("//")[2].partition("/")[0]
    return netloc.rpartition("@")[2].lower()


def _check_template(c: Checker, field: str, template: str, types: tuple[str, ...],
                    token: bool = False) -> None:
    controls = sorted({f"{ord(ch):#04x}" for ch in template if ord(ch) < 0x20 or ord(ch) == 0x7F})
    if controls:
        c.fail(field, template, f"control characters ({', '.join(controls)}) are not allowed in "
               "URL parameters (they could split the request); percent-encode them")
    for name in dict.fromkeys(placeholders(template)):
        if name == TOKEN_PLACEHOLDER:
            if not token:
                c.fail(field, template, "placeholder %TOKEN% needs an auth whose token goes "
                       "in the URL parameters: add auth: {type: ..., token_in: params} "
                       "(see README, destinations with a token), or remove %TOKEN%")
            continue
        lacking = [t for t in types if name not in params_for(t)]
        if len(lacking) == 1:
            valid = ", ".join(sorted(params_for(lacking[0])))
            c.fail(
                field,
                template,
                f"placeholder %{name}% is not a parameter of {lacking[0]} (valid: {valid})",
            )
        elif lacking:
            common = frozenset.intersection(*(params_for(t) for t in types))
            c.fail(
                field,
                template,
                f"placeholder %{name}% is not a parameter of "
                f"{', '.join(lacking)} (valid for every event of this "
                f"destination: {', '.join(sorted(common))}; or give params "
                "as a map per event type)",
            )


def _params(c: Checker, value: Any, events: tuple[str, ...], token: bool = False
            ) -> str | dict[str, str]:
    if token and not any(isinstance(t, str) and f"%{TOKEN_PLACEHOLDER}%" in t for t in (
            [value] if isinstance(value, str) else
            list(value.values()) if isinstance(value, Mapping) else [])):
        c.fail("auth.token_in", "params", "the token goes in the URL parameters but no "
               "params template has %TOKEN%: add e.g. &token=%TOKEN% to params, or use "
               "token_in: header")
    if value is None:
        return ""
    if isinstance(value, str):
        _check_template(c, "params", value, events, token)
        return value
    if not isinstance(value, Mapping):
        c.fail(
            "params",
            value,
            f"{show(value)} is not a template string or a map from event type to template",
        )
        return ""
    out: dict[str, str] = {}
    for key, template in value.items():
        field = f"params.{key}"
        if key not in events:
            c.fail(
                field,
                key,
                f"{show(key)} is not one of this destination's events "
                f"({', '.join(events) or 'none'})",
            )
        elif not isinstance(template, str):
            c.fail(field, template, f"{show(template)} is not a template string")
        else:
            _check_template(c, field, template, (key,), token)
            out[key] = template
    return out


def _results(c: Checker, value: Any) -> tuple[str, ...]:
    if (
        isinstance(value, list | tuple)
        and value
        and all(isinstance(r, str) and r in RESULTS for r in value)
    ):
        return tuple(r for r in RESULTS if r in value)
    c.fail("results", value, f"{show(value)} is not a non-empty subset of [success, failure]")
    return RESULTS


def _filter(c: Checker, value: Any, events: tuple[str, ...]) -> Filter | None:
    try:
        return compile_filter(value, events)
    except InvalidFilter as exc:
        for problem in exc.problems:
            c.fail("filter", problem.value, problem.message)
        return None


def model_errors(c: Checker, data: Mapping[str, Any]) -> None:
    """Validate ``data`` with :class:`~workers.destinations.schema.DestinationIn` too.

    The pydantic model is what the OpenAPI document and ``recnotify destinations schema``
    publish; checking every body and file entry against it as well means a shape it
    refuses is refused here (the rules above, with their messages, run first: this adds
    an error only where they accepted), so the published schema and the service cannot
    drift apart. Each refusal names the field, the value and what the model expects.
    """
    try:
        DestinationIn.model_validate(dict(data), strict=True)
    except ValidationError as exc:
        found: dict[str, tuple[Any, str]] = {}
        for error in exc.errors(include_url=False):
            found.setdefault(_data_path(data, error["loc"]), (error.get("input"), error["msg"]))
        for field, (value, why) in found.items():
            if any(other.startswith(field + ".") for other in found):
                continue  # a union reports each branch: keep the deepest refusal
            c.fail(field, value, f"{show(value)} does not fit the published schema "
                   f"({why}; see `recnotify destinations schema`)")


def _data_path(data: Any, loc: tuple[int | str, ...]) -> str:
    """The field path in ``data`` of a pydantic error location: the parts that are keys
    or indexes of the data, without the union-branch tags pydantic adds."""
    parts: list[str] = []
    node = data
    for part in loc:
        if isinstance(node, Mapping):
            found = part in node
        else:
            found = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if found:
            node = node[part]
            parts.append(str(part))
    return ".".join(parts) or "body"
