"""A destination's ``auth`` (issue 18): how a worker obtains the token it sends. Pure.

Two types:

``oauth2_client_credentials`` (RFC 6749 section 4.4)::

    auth: {type: oauth2_client_credentials, token_url: https://idp/token,
           client_id: recnotify, client_secret: s3cret, scope: notify}

``login_form`` (a session token from a login form; the FACE REST API shape)::

    auth: {type: login_form, login_url: https://face:8443/Face/login,
           username: ops@example.com, password: s3cret, expiration_s: 3600}

The token goes in a header (``token_header``, default ``Authorization``, with
``token_prefix``, default ``"Bearer "``) or, with ``token_in: params``, into the
``%TOKEN%`` placeholder of the destination's URL parameters.

The credential (``client_secret`` / ``password``) is a secret (SPEC 6): encrypted at
rest with the destination's other secrets, masked in every view.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "AUTH_TYPES",
    "LOGIN_FORM",
    "OAUTH2",
    "TOKEN_PLACEHOLDER",
    "AuthConfig",
    "credential_key",
    "file_keys",
]

OAUTH2 = "oauth2_client_credentials"
LOGIN_FORM = "login_form"
AUTH_TYPES = (OAUTH2, LOGIN_FORM)
#: The placeholder name a destination's params may use when its token goes there.
TOKEN_PLACEHOLDER = "TOKEN"

AuthType = Literal["oauth2_client_credentials", "login_form"]
TokenIn = Literal["header", "params"]
ClientAuth = Literal["basic", "post"]

#: The file's names of (url, user, credential) per type.
_NAMES: dict[str, tuple[str, str, str]] = {
    OAUTH2: ("token_url", "client_id", "client_secret"),
    LOGIN_FORM: ("login_url", "username", "password"),
}
_COMMON = ("type", "token_in", "token_header", "token_prefix")
_ONLY: dict[str, tuple[str, ...]] = {
    OAUTH2: ("scope", "client_auth"),
    LOGIN_FORM: ("expiration_s", "username_field", "password_field", "expiration_field"),
}


def file_keys(auth_type: str) -> tuple[str, ...]:
    """Every field an ``auth`` map of ``auth_type`` may hold."""
    return (*_COMMON, *_NAMES[auth_type], *_ONLY[auth_type])


def credential_key(auth_type: str) -> str:
    """``client_secret`` or ``password``: the auth's secret field."""
    return _NAMES[auth_type][2]


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """One validated ``auth``; build it with ``workers.destinations.auth_checks.check_auth``."""

    type: AuthType
    url: str
    user: str
    credential: str
    scope: str | None = None
    client_auth: ClientAuth = "basic"
    expiration_s: int | None = None
    username_field: str = "userEmail"
    password_field: str = "password"
    expiration_field: str = "expirationSeconds"
    token_in: TokenIn = "header"
    token_header: str = "Authorization"
    token_prefix: str = "Bearer "

    def __repr__(self) -> str:
        return f"AuthConfig(type={self.type!r}, url={self.url!r}, user={self.user!r}, ********)"

    @property
    def in_params(self) -> bool:
        return self.token_in == "params"

    def to_dict(self, mask: str | None) -> dict[str, Any]:
        """The file shape; the credential replaced by ``mask`` unless it is None."""
        url_key, user_key, secret_key = _NAMES[self.type]
        out: dict[str, Any] = {"type": self.type, url_key: self.url, user_key: self.user,
                               secret_key: self.credential if mask is None else mask}
        defaults = AuthConfig(self.type, "", "", "")
        for key in (*_ONLY[self.type], *_COMMON[1:]):
            value = getattr(self, key)
            if value != getattr(defaults, key):
                out[key] = value
        return out

    def cache_key(self, destination: str) -> str:
        """Tokens are cached under this: any change of the auth (or its credential) makes
        a new key, so an edited destination never reuses a token of the old settings."""
        text = json.dumps([destination, self.to_dict(None)], sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
