"""Retry policy: how long to wait before the next attempt (SPEC section 4 ``retry``).

``exponential`` (default): the wait after failed attempt ``n`` is drawn
uniformly from ``[d/2, d]`` with ``d = min(backoff_max_s, backoff_s * 2**(n-1))``
("equal jitter": spread out, but never much shorter than planned).

``standard``: the Standard Webhooks schedule, about 5 s, 5 min, 30 min, 2 h,
5 h, 10 h, 10 h (each +-10 %; the last step repeats); ``backoff_s`` and
``backoff_max_s`` do not apply.

Pure functions: the caller passes the clock and, in tests, a seeded RNG.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Literal, get_args

from workers.errors import InvalidValue

__all__ = [
    "STANDARD_JITTER",
    "STANDARD_SCHEDULE_S",
    "RetryPolicy",
    "compute_backoff_s",
    "max_span_s",
    "parse_retry_after",
]

Policy = Literal["exponential", "standard"]

STANDARD_SCHEDULE_S: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 36000)
#: ``standard`` waits are the schedule's value times a factor in [1 - j, 1 + j].
STANDARD_JITTER = 0.1
MAX_ATTEMPTS_LIMIT = 100

_DELTA_SECONDS_RE = re.compile(r"\d+(\.\d+)?")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A destination's ``retry`` settings; invalid values raise InvalidValue at creation."""

    max_attempts: int = 8
    backoff_s: float = 1.0
    backoff_max_s: float = 600.0
    policy: Policy = "exponential"

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_attempts, bool)
            or not isinstance(self.max_attempts, int)
            or not 1 <= self.max_attempts <= MAX_ATTEMPTS_LIMIT
        ):
            raise InvalidValue(
                f"retry.max_attempts must be an integer from 1 to {MAX_ATTEMPTS_LIMIT}, "
                f"got {self.max_attempts!r}"
            )
        if not _is_number(self.backoff_s) or not self.backoff_s > 0:
            raise InvalidValue(f"retry.backoff_s must be a number > 0, got {self.backoff_s!r}")
        if not _is_number(self.backoff_max_s) or not self.backoff_max_s >= self.backoff_s:
            raise InvalidValue(
                f"retry.backoff_max_s must be a number >= backoff_s ({self.backoff_s!r}), "
                f"got {self.backoff_max_s!r}"
            )
        if self.policy not in get_args(Policy):
            raise InvalidValue(
                f"retry.policy must be 'exponential' or 'standard', got {self.policy!r}"
            )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _exponential_cap_s(policy: RetryPolicy, attempt: int) -> float:
    """``d`` for attempt ``attempt``: the upper bound of its exponential wait."""
    try:
        return min(policy.backoff_max_s, math.ldexp(policy.backoff_s, attempt - 1))
    except OverflowError:  # 2**(n-1) beyond float range: long past the cap
        return policy.backoff_max_s


def _standard_base_s(attempt: int) -> float:
    return STANDARD_SCHEDULE_S[min(attempt - 1, len(STANDARD_SCHEDULE_S) - 1)]


def compute_backoff_s(policy: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt ``attempt + 1``, after attempt ``attempt`` (>= 1) failed."""
    if attempt < 1:
        raise InvalidValue(f"attempt must be >= 1, got {attempt!r}")
    uniform = (rng or random).uniform
    if policy.policy == "standard":
        base = _standard_base_s(attempt)
        return base * uniform(1 - STANDARD_JITTER, 1 + STANDARD_JITTER)
    cap = _exponential_cap_s(policy, attempt)
    return uniform(cap / 2, cap)


def max_span_s(policy: RetryPolicy) -> float:
    """Upper bound of the sum of all waits between the policy's attempts.

    A ``Retry-After`` longer than the computed wait, or time spent waiting on
    an open circuit, is not included: callers that honour those add it.
    """
    waits = range(1, policy.max_attempts)
    if policy.policy == "standard":
        return sum(_standard_base_s(n) * (1 + STANDARD_JITTER) for n in waits)
    return sum(_exponential_cap_s(policy, n) for n in waits)


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, or None when absent or unparseable.

    Accepts delta-seconds (``120``, fractions tolerated) or an HTTP-date, which is
    taken relative to ``now_s`` (Unix seconds) and clamped to >= 0 when in the past.
    """
    if value is None:
        return None
    text = value.strip()
    if _DELTA_SECONDS_RE.fullmatch(text):
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": UTC with no claim about local time
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now_s)
