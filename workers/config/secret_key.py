"""Where the secret key comes from: ``RECNOTIFY_SECRET_KEY``, else the data dir's key file."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

KEY_FILE = "secret.key"


def read_key_file(data_dir: Path) -> str | None:
    path = data_dir / KEY_FILE
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def read_or_create_private(path: Path, make: Callable[[], str]) -> str:
    """The text of ``path``; when missing, ``make()`` is written there with mode 0600."""
    try:
        existing = path.read_text().strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def ensure_key_file(data_dir: Path) -> str:
    """The data dir's key, created (mode 0600) when missing (``recnotify run`` only)."""
    return read_or_create_private(data_dir / KEY_FILE, lambda: secrets.token_urlsafe(32))
