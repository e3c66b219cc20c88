"""Standard Webhooks signatures (https://www.standardwebhooks.com, SPEC section 6).

A secret is ``whsec_`` + standard base64 of 24-64 random bytes; the HMAC key
is the decoded bytes. The signed content is ``{msg_id}.{timestamp}.`` followed
by the payload (the POST body, or for GET the request target: path and query
exactly as sent). The ``webhook-signature`` header holds ``v1,<base64 HMAC-SHA256>``
once per active secret, separated by single spaces, so a receiver can keep
verifying while a secret is rotated.

Receivers: recompute with :func:`verify` (or any Standard Webhooks library)
and also refuse a ``webhook-timestamp`` too far from their clock (e.g. 5
minutes) to stop replays; :func:`verify` checks only the signature.

Error messages here never include a secret's value.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _random
from collections.abc import Sequence

from workers.errors import InvalidValue

__all__ = [
    "MAX_SECRET_BYTES",
    "MIN_SECRET_BYTES",
    "SECRET_PREFIX",
    "generate_secret",
    "sign",
    "validate_secret",
    "verify",
]

SECRET_PREFIX = "whsec_"
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 64
_VERSION = "v1"


def _check_size(nbytes: int) -> None:
    if not MIN_SECRET_BYTES <= nbytes <= MAX_SECRET_BYTES:
        raise InvalidValue(
            f"signing secret must hold {MIN_SECRET_BYTES}-{MAX_SECRET_BYTES} bytes, got {nbytes}"
        )


def _key(secret: str) -> bytes:
    """The HMAC key of a valid secret; ValueError (without the secret) otherwise."""
    if not secret.startswith(SECRET_PREFIX):
        raise InvalidValue(f"signing secret must start with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise InvalidValue(
            f"signing secret must be {SECRET_PREFIX!r} followed by standard base64 "
            "(A-Z a-z 0-9 + /, '=' padding)"
        ) from None
    _check_size(len(key))
    return key


def generate_secret(nbytes: int = 32) -> str:
    """A new random secret: ``whsec_`` + base64 of ``nbytes`` (24-64) random bytes."""
    _check_size(nbytes)
    return SECRET_PREFIX + base64.b64encode(_random.token_bytes(nbytes)).decode("ascii")


def validate_secret(secret: str) -> None:
    """Raise ValueError naming the problem unless ``secret`` is a valid signing secret."""
    _key(secret)


def _signature(key: bytes, msg_id: str, timestamp: int, payload: bytes) -> str:
    content = f"{msg_id}.{timestamp}.".encode() + payload
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return f"{_VERSION},{base64.b64encode(digest).decode('ascii')}"


def sign(secrets: Sequence[str], msg_id: str, timestamp: int, payload: bytes) -> str:
    """The ``webhook-signature`` header value: one ``v1,...`` per secret, space-separated."""
    return " ".join(_signature(_key(s), msg_id, timestamp, payload) for s in secrets)


def verify(secret: str, msg_id: str, timestamp: int, payload: bytes, header: str) -> bool:
    """True when any ``v1`` signature of ``header`` matches ``secret`` (constant-time)."""
    expected = _signature(_key(secret), msg_id, timestamp, payload).encode("ascii")
    found = False
    for candidate in header.split():
        if candidate.startswith(f"{_VERSION},"):
            found |= hmac.compare_digest(candidate.encode("utf-8"), expected)
    return found
