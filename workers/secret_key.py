"""Where the secret key comes from: ``RECNOTIFY_SECRET_KEY``, else the data dir's key file."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

KEY_FILE = "secret.key"


def read_key_file(data_dir: Path) -> str | None:
    path = data_dir / KEY_FILE
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def ensure_key_file(data_dir: Path) -> str:
    """The data dir's key, created (mode 0600) when missing (``recnotify run`` only)."""
    existing = read_key_file(data_dir)
    if existing:
        return existing
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    path = data_dir / KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key
