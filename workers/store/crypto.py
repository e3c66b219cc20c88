"""Encryption of destination secrets at rest (SPEC section 6).

:class:`SecretBox` is Fernet (AES-128-CBC + HMAC-SHA256) with a key derived by
HKDF-SHA256 from ``RECNOTIFY_SECRET_KEY``. The same key string always gives
the same box, so any worker can read what another stored.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from workers.errors import ConfigError, StoreError

__all__ = ["MIN_SECRET_KEY_CHARS", "SET_SECRET_KEY_HINT", "SecretBox"]

MIN_SECRET_KEY_CHARS = 16
SET_SECRET_KEY_HINT = (
    "set RECNOTIFY_SECRET_KEY to a random string of 16 or more characters, e.g. "
    'export RECNOTIFY_SECRET_KEY=$(python -c "import secrets; print(secrets.token_urlsafe(32))") '
    "(use the same value on every host, and keep it: stored secrets need it)"
)
_SALT = b"recnotify/secretbox/v1"
_INFO = b"recnotify destination secrets"


class SecretBox:
    """Encrypts and decrypts text with a key derived from ``secret_key``."""

    __slots__ = ("_fernet",)

    def __init__(self, secret_key: str) -> None:
        if not isinstance(secret_key, str) or len(secret_key) < MIN_SECRET_KEY_CHARS:
            raise ConfigError(
                f"RECNOTIFY_SECRET_KEY is too short (fewer than {MIN_SECRET_KEY_CHARS} "
                f"characters): {SET_SECRET_KEY_HINT}"
            )
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=_INFO)
        key = hkdf.derive(secret_key.encode("utf-8"))
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def __repr__(self) -> str:
        return "SecretBox(********)"

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, ValueError, UnicodeError):
            raise StoreError(
                "cannot decrypt stored destination secrets: RECNOTIFY_SECRET_KEY is not the "
                "key they were stored with (did it change?). Set it back to the old value, "
                "or re-enter the secrets of the affected destinations"
            ) from None
