"""Classifying one attempt's result (SPEC 6 "Delivered ... Retried ... final"). Pure."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """Where a notification stands after an attempt."""

    DELIVERED = "delivered"
    RETRYING = "retrying"
    DEAD = "dead"
    WAITING = "waiting"  # parked (open circuit, rate limit): no attempt spent


RETRYABLE_STATUSES = frozenset({408, 429})


def is_retryable_status(status: int) -> bool:
    """5xx, 408 and 429 are retried; every other non-2xx status is final at once."""
    return status >= 500 or status in RETRYABLE_STATUSES


def is_delivered(status: int) -> bool:
    return 200 <= status < 300
