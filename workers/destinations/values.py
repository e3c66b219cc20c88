"""How a refused value is quoted in a message, and what counts as a number. Pure.

Shared by the field checks (``checks.py``), the filters (``filters.py``) and the auth
checks, so every refusal quotes a bad value the same way, never all of a huge one.
"""

from __future__ import annotations

import math
import reprlib
from typing import Any

__all__ = ["is_number", "show"]


class _ShortRepr(reprlib.Repr):
    """``repr`` that stops early: a few items per list or map, a few levels, short texts
    (never the whole value first: an alias bomb's repr would not fit in memory)."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = self.maxfrozenset = 8
        self.maxstring = self.maxother = self.maxlong = 200

    def repr_dict(self, x: dict[Any, Any], level: int) -> str:
        """As reprlib's, in the map's own order (reprlib sorts the keys)."""
        if not x:
            return "{}"
        if level <= 0:
            return "{...}"
        pieces = [f"{self.repr1(k, level - 1)}: {self.repr1(v, level - 1)}"
                  for k, v in list(x.items())[: self.maxdict]]
        return "{" + ", ".join(pieces) + (", ..." if len(x) > self.maxdict else "") + "}"


_SHORT_REPR = _ShortRepr()


def show(value: Any) -> str:
    """A bad value as a message quotes it: ``repr``, cut at 200 characters."""
    try:
        text = _SHORT_REPR.repr(value)
    except Exception:  # a hostile __repr__ must not turn a refusal into a crash
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 200 else text[:197] + "..."


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool); an int too large for a float is none."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # 10**400 from a JSON body: refused, not a crash
        return False
