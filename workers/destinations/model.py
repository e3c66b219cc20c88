"""The destination value objects (SPEC section 4) and their file shape.

Pure: no I/O. Validation lives in :mod:`workers.destinations.rules`; the public
facade is :mod:`workers.destinations`.

Secrets of a destination are its signing ``secret`` (and ``old_secrets`` during
a rotation), the values of headers marked ``secret`` and the userinfo of its
URL (``https://user:pass@host``). :meth:`Destination.to_dict` masks them with
:data:`MASK` unless asked not to; :func:`split_secrets` separates them so the
store can encrypt them apart from the rest.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from workers.destinations.auth import AuthConfig
from workers.destinations.backoff import RetryPolicy, max_span_s
from workers.http.tls import TlsOptions

if TYPE_CHECKING:
    from workers.destinations.filters import Filter

__all__ = [
    "MASK",
    "PRESETS",
    "CircuitOptions",
    "Destination",
    "Header",
    "SecretBundle",
    "TlsOptions",
    "mask_userinfo",
    "span_s",
    "split_secrets",
    "url_userinfo",
]

MASK = "********"

Method = Literal["GET", "POST"]
OnDeadLetter = Literal["continue", "hold"]

#: Field values each preset fills in; fields the user gives override them. A FACE receiver
#: that wants a session token: add ``auth: {type: login_form, login_url: .../Face/login,
#: username, password}`` (README "Destinations with a token (auth)").
PRESETS: dict[str, dict[str, Any]] = {
    "face": {
        "events": ["RECORDING_STARTED_EVENT", "RECORDING_ENDED_EVENT"],
        "results": ["success"],
        "ordered": True,
        # a screen capture started minutes late is worse than none; a stop is always
        # wanted (README "Expiry")
        "expire_after_s": {"RECORDING_STARTED_EVENT": 120},
        "params": {
            "RECORDING_STARTED_EVENT": (
                "event=AudioRecordingStarted&calledAors=%CALLEDAORS%&ucid=%UCID%"
            ),
            "RECORDING_ENDED_EVENT": (
                "event=AudioRecordingEnded&calledAors=%CALLEDAORS%&ucid=%UCID%"
            ),
        },
    },
    "json": {"method": "POST", "events": "all", "params": ""},
}


@dataclass(frozen=True, slots=True)
class CircuitOptions:
    failures: int = 5
    reset_s: float = 30.0


@dataclass(frozen=True, slots=True)
class Header:
    name: str
    value: str
    secret: bool = False

    def __repr__(self) -> str:
        value = MASK if self.secret else repr(self.value)
        return f"Header(name={self.name!r}, value={value}, secret={self.secret})"


def url_userinfo(url: str) -> str | None:
    """The ``user:pass`` part of ``url``, or None."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:  # an unclosed "[" (IPv6 literal): read the authority by hand
        netloc = re.split(r"[/?#]", url.partition("//")[2], maxsplit=1)[0]
    return netloc.rpartition("@")[0] if "@" in netloc else None


def mask_userinfo(url: str, replacement: str = MASK) -> str:
    """``url`` with its userinfo replaced by ``replacement`` (removed when it is "")."""
    userinfo = url_userinfo(url)
    if userinfo is None:
        return url
    scheme_end = url.index("//") + 2
    rest = url[scheme_end + len(userinfo) + 1 :]
    prefix = f"{replacement}@" if replacement else ""
    return f"{url[:scheme_end]}{prefix}{rest}"


@dataclass(frozen=True, slots=True)
class Destination:
    """One validated destination. Build it with ``parse_destination``.

    ``params`` is one template for every event, or a map event type -> template
    (a type missing from the map sends no parameters). ``all_events`` remembers
    that the user wrote ``events: all``. The repr masks every secret.
    """

    name: str
    events: tuple[str, ...]
    scope: str
    url: str
    params: str | dict[str, str] = ""
    method: Method = "GET"
    results: tuple[str, ...] = ("success", "failure")
    headers: tuple[Header, ...] = ()
    secret: str | None = None
    old_secrets: tuple[tuple[str, float], ...] = ()
    timeout_s: float = 10.0
    tls: TlsOptions = field(default_factory=TlsOptions)
    allow_cidrs: tuple[str, ...] = ()
    deny_cidrs: tuple[str, ...] = ()
    circuit: CircuitOptions = CircuitOptions()
    retry: RetryPolicy = RetryPolicy()  # noqa: RUF009 - frozen, immutable
    rate_limit_per_s: float | None = None
    max_in_flight: int | None = None
    ordered: bool = False
    on_dead_letter: OnDeadLetter = "continue"
    #: seconds for every event type, or a map event type -> seconds (workers/destinations/expiry.py)
    expire_after_s: float | dict[str, float] | None = None
    enabled: bool = True
    preset: str | None = None
    all_events: bool = False
    #: How a token is obtained and sent (workers/destinations/auth.py); None: no token.
    auth: AuthConfig | None = None
    #: conditions on the event's parameters (workers.destinations.filters); None: every event passes
    filter: Filter | None = None

    def __repr__(self) -> str:
        return (
            f"Destination(name={self.name!r}, scope={self.scope!r}, "
            f"url={mask_userinfo(self.url)!r}, events={self.events!r}, "
            f"method={self.method!r}, enabled={self.enabled!r})"
        )

    @property
    def scope_kind(self) -> str:
        """``global``, ``route``, ``account`` or ``realm``."""
        return self.scope.partition(":")[0]

    @property
    def scope_value(self) -> str | None:
        """The route / account / realm name, None for ``global``."""
        kind, _, value = self.scope.partition(":")
        return value if kind != "global" else None

    @property
    def has_secrets(self) -> bool:
        return bool(
            self.secret
            or self.old_secrets
            or url_userinfo(self.url) is not None
            or any(h.secret for h in self.headers)
            or self.auth is not None
        )

    def template_for(self, event_type: str) -> str:
        """The parameter template for ``event_type`` ("" when a map has no entry)."""
        if isinstance(self.params, str):
            return self.params
        return self.params.get(event_type, "")

    def active_secrets(self, now_s: float) -> tuple[str, ...]:
        """Signing secrets to sign with: the current one, then old ones not yet expired."""
        if self.secret is None:
            return ()
        old = tuple(s for s, expires_at in self.old_secrets if expires_at > now_s)
        return (self.secret, *old)

    def to_dict(self, *, include_secrets: bool = False) -> dict[str, Any]:
        """The SPEC 4 file shape; secrets masked unless ``include_secrets``.

        Optional fields at their defaults are left out; the fields a preset
        fills are always written so the preset cannot override them on load.
        """
        out: dict[str, Any] = {"name": self.name}
        if self.preset is not None:
            out["preset"] = self.preset
        out["events"] = "all" if self.all_events else list(self.events)
        out["scope"] = self.scope
        out["url"] = self.url if include_secrets else mask_userinfo(self.url)
        out["params"] = self.params if isinstance(self.params, str) else dict(self.params)
        out["method"] = self.method
        out["results"] = list(self.results)
        out["ordered"] = self.ordered
        out["enabled"] = self.enabled
        if self.headers:
            out["headers"] = {
                h.name: {"value": h.value if include_secrets else MASK, "secret": True}
                if h.secret
                else h.value
                for h in self.headers
            }
        if self.secret is not None:
            out["secret"] = self.secret if include_secrets else MASK
        if self.timeout_s != 10.0:
            out["timeout_s"] = self.timeout_s
        if self.tls != TlsOptions():
            out["tls"] = {
                k: getattr(self.tls, k)
                for k in ("verify", "ca_bundle", "client_cert", "client_key")
                if getattr(self.tls, k) != getattr(TlsOptions(), k)
            }
        if self.allow_cidrs:
            out["allow_cidrs"] = list(self.allow_cidrs)
        if self.deny_cidrs:
            out["deny_cidrs"] = list(self.deny_cidrs)
        if self.circuit != CircuitOptions():
            out["circuit"] = {"failures": self.circuit.failures, "reset_s": self.circuit.reset_s}
        if self.retry != RetryPolicy():
            r = self.retry
            out["retry"] = {
                "max_attempts": r.max_attempts,
                "backoff_s": r.backoff_s,
                "backoff_max_s": r.backoff_max_s,
                "policy": r.policy,
            }
        if self.rate_limit_per_s is not None:
            out["rate_limit_per_s"] = self.rate_limit_per_s
        if self.max_in_flight is not None:
            out["max_in_flight"] = self.max_in_flight
        if self.on_dead_letter != "continue":
            out["on_dead_letter"] = self.on_dead_letter
        if self.auth is not None:
            out["auth"] = self.auth.to_dict(None if include_secrets else MASK)
        if self.expire_after_s is not None or "expire_after_s" in PRESETS.get(
                self.preset or "", {}):
            # when the preset has a default, always (null too): it cannot come back on load
            out["expire_after_s"] = (dict(self.expire_after_s)
                                     if isinstance(self.expire_after_s, dict)
                                     else self.expire_after_s)
        if self.filter is not None:
            out["filter"] = copy.deepcopy(self.filter.source)
        return out


@dataclass(frozen=True, slots=True)
class SecretBundle:
    """Every secret of one destination, for encryption at rest."""

    secret: str | None = None
    old_secrets: tuple[tuple[str, float], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    userinfo: str | None = None
    #: The auth's client_secret / password.
    auth: str | None = None

    def __repr__(self) -> str:
        return "SecretBundle(********)"

    def __bool__(self) -> bool:
        return bool(self.secret or self.old_secrets or self.headers or self.userinfo
                    or self.auth)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "secret": self.secret,
            "old_secrets": [list(pair) for pair in self.old_secrets],
            "headers": dict(self.headers),
            "userinfo": self.userinfo,
            "auth": self.auth,
        }

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> SecretBundle:
        return cls(
            secret=data.get("secret"),
            old_secrets=tuple((str(s), float(t)) for s, t in data.get("old_secrets", [])),
            headers=tuple((str(k), str(v)) for k, v in data.get("headers", {}).items()),
            userinfo=data.get("userinfo"),
            auth=data.get("auth"),
        )


def split_secrets(dest: Destination) -> tuple[dict[str, Any], SecretBundle]:
    """``dest`` as a masked file-shape dict and the secrets it masks."""
    bundle = SecretBundle(
        secret=dest.secret,
        old_secrets=dest.old_secrets,
        headers=tuple((h.name, h.value) for h in dest.headers if h.secret),
        userinfo=url_userinfo(dest.url),
        auth=dest.auth.credential if dest.auth is not None else None,
    )
    return dest.to_dict(include_secrets=False), bundle


def span_s(dest: Destination) -> float:
    """How long a notification may take from its first try to delivered or dead.

    The retry policy's span; at least one circuit reset period, so even a
    single-attempt destination gets one probe after its circuit opened.
    """
    return max(max_span_s(dest.retry), dest.circuit.reset_s)
