"""Retry policy (SPEC section 4 ``retry``)."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from workers.destinations.backoff import (
    STANDARD_SCHEDULE_S,
    RetryPolicy,
    compute_backoff_s,
    max_span_s,
    parse_retry_after,
)


def test_exponential_wait_is_within_half_to_full_of_doubling_delay() -> None:
    policy = RetryPolicy()
    rng = random.Random(1234)
    for attempt in range(1, 40):
        d = min(600.0, 1.0 * 2 ** (attempt - 1))
        for _ in range(50):
            assert d / 2 <= compute_backoff_s(policy, attempt, rng) <= d


def test_exponential_wait_is_capped_at_backoff_max() -> None:
    policy = RetryPolicy(backoff_s=2, backoff_max_s=10)
    rng = random.Random(7)
    waits = [compute_backoff_s(policy, 20, rng) for _ in range(200)]
    assert all(5 <= w <= 10 for w in waits)
    assert max(waits) > 9.5  # the cap is reached, not a lower doubling


def test_huge_attempt_number_does_not_overflow() -> None:
    policy = RetryPolicy(max_attempts=100, backoff_max_s=600)
    assert 300 <= compute_backoff_s(policy, 10_000, random.Random(0)) <= 600


def test_fractional_seconds_are_allowed() -> None:
    policy = RetryPolicy(backoff_s=0.25, backoff_max_s=1.5)
    rng = random.Random(3)
    assert 0.125 <= compute_backoff_s(policy, 1, rng) <= 0.25
    assert 0.75 <= compute_backoff_s(policy, 4, rng) <= 1.5
    assert max_span_s(RetryPolicy(max_attempts=3, backoff_s=0.25)) == 0.25 + 0.5


def test_seeded_rng_gives_repeatable_waits() -> None:
    policy = RetryPolicy()
    first = [compute_backoff_s(policy, n, random.Random(42)) for n in range(1, 8)]
    again = [compute_backoff_s(policy, n, random.Random(42)) for n in range(1, 8)]
    assert first == again


def test_standard_schedule_waits_about_each_step_then_repeats_the_last() -> None:
    policy = RetryPolicy(policy="standard")
    rng = random.Random(99)
    expected = [*STANDARD_SCHEDULE_S, STANDARD_SCHEDULE_S[-1], STANDARD_SCHEDULE_S[-1]]
    for attempt, base in enumerate(expected, start=1):
        for _ in range(20):
            assert 0.9 * base <= compute_backoff_s(policy, attempt, rng) <= 1.1 * base


def test_standard_schedule_is_the_standard_webhooks_one() -> None:
    assert STANDARD_SCHEDULE_S == (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)


def test_max_span_bounds_the_sum_of_all_waits() -> None:
    exponential = RetryPolicy()  # 7 waits: 1+2+4+8+16+32+64
    assert max_span_s(exponential) == 127
    standard = RetryPolicy(policy="standard")
    assert max_span_s(standard) == pytest.approx(1.1 * sum(STANDARD_SCHEDULE_S))
    assert max_span_s(RetryPolicy(max_attempts=1)) == 0
    rng = random.Random(5)
    for policy in (exponential, standard, RetryPolicy(max_attempts=30, backoff_max_s=60)):
        total = sum(compute_backoff_s(policy, n, rng) for n in range(1, policy.max_attempts))
        assert total <= max_span_s(policy)


def test_attempt_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="attempt must be >= 1, got 0"):
        compute_backoff_s(RetryPolicy(), 0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_attempts": 0}, "max_attempts .* got 0"),
        ({"max_attempts": 101}, "max_attempts .* got 101"),
        ({"max_attempts": True}, "max_attempts .* got True"),
        ({"backoff_s": 0}, "backoff_s must be a number > 0, got 0"),
        ({"backoff_s": float("nan")}, "backoff_s .* got nan"),
        ({"backoff_s": 10, "backoff_max_s": 5}, "backoff_max_s .* got 5"),
        ({"policy": "linear"}, "policy .* got 'linear'"),
    ],
)
def test_invalid_policy_is_refused_naming_field_and_value(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_limits_are_accepted() -> None:
    assert RetryPolicy(max_attempts=1).max_attempts == 1
    assert RetryPolicy(max_attempts=100, backoff_s=5, backoff_max_s=5).backoff_max_s == 5


NOW = datetime(2026, 11, 24, 20, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("value", "seconds"), [("120", 120.0), (" 0 ", 0.0), ("1.5", 1.5)])
def test_retry_after_delta_seconds(value: str, seconds: float) -> None:
    assert parse_retry_after(value, NOW) == seconds


def test_retry_after_http_date_is_relative_to_now() -> None:
    assert parse_retry_after("Tue, 24 Nov 2026 20:01:30 GMT", NOW) == 90.0
    later = format_datetime(datetime(2026, 11, 24, 21, 0, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(later, NOW) == 3600.0


def test_retry_after_date_in_the_past_is_zero() -> None:
    assert parse_retry_after("Tue, 24 Nov 2026 19:00:00 GMT", NOW) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1e3", "Tue, 99 Foo 2026", "12 s"])
def test_retry_after_absent_or_garbage_is_none(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None
