"""Checks of a destination's ``auth`` field (see :mod:`workers.destinations.auth`).

Used by :mod:`workers.destinations.rules`; every refusal is a FieldError naming
``auth.FIELD``, the bad value (the credential always masked) and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from workers.destinations.auth import (
    AUTH_TYPES,
    OAUTH2,
    AuthConfig,
    credential_key,
    file_keys,
)
from workers.destinations.checks import _TOKEN_RE, Checker
from workers.destinations.model import MASK
from workers.destinations.values import show

__all__ = ["check_auth"]

MAX_EXPIRATION_S = 86_400 * 366
#: Form field names: what a browser form would send (letters, digits, ``_.-``).
_FIELD_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def check_auth(c: Checker, value: Any, existing: AuthConfig | None) -> AuthConfig | None:
    """The validated ``auth`` (None when not given or null); errors go to ``c``.

    A masked credential (``********``) keeps the stored one only when the type and the
    token / login URL's host:port are unchanged: editing the URL to another host never
    sends the stored credential there.
    """
    if value is None:
        return None
    if not isinstance(value, Mapping):
        c.fail("auth", value, f"{show(value)} is not a map (type: {' or '.join(AUTH_TYPES)}, "
               "and the fields of that type)")
        return None
    kind = value.get("type")
    if kind not in AUTH_TYPES:
        c.fail("auth.type", kind, f"{show(kind)} is not an auth type (expected "
               f"{' or '.join(AUTH_TYPES)})")
        return None
    c.no_unknown(value, file_keys(kind), "auth.")
    url_key, user_key = ("token_url", "client_id") if kind == OAUTH2 else ("login_url", "username")
    url = _url(c, f"auth.{url_key}", value.get(url_key))
    user = value.get(user_key)
    if not isinstance(user, str) or not user or any(ch < " " for ch in user):
        c.fail(f"auth.{user_key}", user, f"{show(user)} is not a {user_key} (a non-empty "
               "string without control characters; it is required)")
        user = ""
    credential = _credential(c, kind, value, url, existing)
    token_in = c.typed(value, "token_in", "header", lambda v: v in ("header", "params"),
                       "'header' or 'params'", "auth.token_in")
    header = c.typed(value, "token_header", "Authorization",
                     lambda v: isinstance(v, str) and bool(_TOKEN_RE.fullmatch(v)),
                     "an HTTP header name", "auth.token_header")
    prefix = c.typed(value, "token_prefix", "Bearer ",
                     lambda v: isinstance(v, str) and not any(ch < " " for ch in v),
                     "a text without control characters", "auth.token_prefix")
    if isinstance(header, str) and (header.lower().startswith("x-recnotify-")
                                    or header.lower().startswith("webhook-")):
        c.fail("auth.token_header", header, f"{header!r} is set by recnotify; choose another "
               "header (e.g. Authorization)")
    common: dict[str, Any] = {"token_in": token_in, "token_header": header,
                              "token_prefix": prefix}
    if kind == OAUTH2:
        scope = c.typed(value, "scope", None,
                        lambda v: isinstance(v, str) and v.strip() != ""
                        and not any(ch < " " for ch in v),
                        "a space-separated list of scopes", "auth.scope")
        client_auth = c.typed(value, "client_auth", "basic", lambda v: v in ("basic", "post"),
                              "'basic' (HTTP Basic, RFC 6749 2.3.1) or 'post' (form fields)",
                              "auth.client_auth")
        return AuthConfig("oauth2_client_credentials", url, user, credential, scope=scope,
                          client_auth=client_auth, **common)
    expiration = c.typed(value, "expiration_s", None,
                         lambda v: isinstance(v, int) and not isinstance(v, bool)
                         and 1 <= v <= MAX_EXPIRATION_S,
                         f"an integer number of seconds in [1, {MAX_EXPIRATION_S}]",
                         "auth.expiration_s")
    fields = {
        key: c.typed(value, key, default,
                     lambda v: isinstance(v, str) and v != "" and set(v) <= _FIELD_OK,
                     "a form field name (letters, digits, _ . -)", f"auth.{key}")
        for key, default in (("username_field", "userEmail"), ("password_field", "password"),
                             ("expiration_field", "expirationSeconds"))
    }
    return AuthConfig("login_form", url, user, credential, expiration_s=expiration, **fields,
                      **common)


def _credential(c: Checker, kind: str, value: Mapping[str, Any], url: str,
                existing: AuthConfig | None) -> str:
    key = credential_key(kind)
    given = value.get(key)
    if given == MASK:
        if existing is None or existing.type != kind:
            c.fail(f"auth.{key}", MASK, f"masked value but no stored {key} to keep: give it")
            return ""
        if _host(existing.url) != _host(url):
            c.fail(f"auth.{key}", MASK, f"a masked {key} is kept only for the same host:port "
                   f"of the {'token' if kind == OAUTH2 else 'login'} URL; give the {key} for "
                   "the new host")
            return ""
        return existing.credential
    if not isinstance(given, str) or not given or any(ch in given for ch in "\r\n\0"):
        c.fail(f"auth.{key}", MASK, f"{key} is required (a non-empty string without CR, LF "
               "or NUL); it is stored encrypted and shown as ********")
        return ""
    return given


def _url(c: Checker, field: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        c.fail(field, value, f"{show(value)} is not a URL ({field.split('.')[-1]} is required, "
               "e.g. https://host:8443/path)")
        return ""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        c.fail(field, value, f"{show(value)} is not a valid URL ({exc})")
        return value
    if parts.scheme not in ("http", "https") or not parts.hostname:
        c.fail(field, value, f"{show(value)} is not an absolute http(s) URL "
               "(e.g. https://host:8443/Face/login)")
    elif "@" in parts.netloc:
        c.fail(field, "********@", "credentials in the URL are not sent to a token endpoint: "
               "remove user:password@ and give them as the auth's fields")
    elif "#" in value:
        c.fail(field, value, f"{show(value)} has a #fragment, which is never sent: remove it")
    elif any(ch <= " " or ch == "\x7f" for ch in value):
        c.fail(field, value, f"{show(value)} contains spaces or control characters "
               "(percent-encode them)")
    return value


def _host(url: str) -> str:
    try:
        return urlsplit(url).netloc.rpartition("@")[2].lower()
    except ValueError:
        return ""
