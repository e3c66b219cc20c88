"""Reading values back from Redis: bytes (or str, or nothing) as text."""

from __future__ import annotations

from typing import Any

__all__ = ["as_text"]


def as_text(value: Any) -> str:
    """``value`` as text: ``""`` for None, bytes decoded as UTF-8 (never raising), else str."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
