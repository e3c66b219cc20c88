"""The backfill's selection: times, filters and job ids, on plain values."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from producer.events import EVENT_TYPES, validate_event
from workers.errors import InvalidValue
from workers.ops.selection import Selection, parse_when

NOW = 1_800_000_000.0


@pytest.mark.parametrize("text, age_s", [("90s", 90), ("30m", 1800), ("2h", 7200),
                                         ("7d", 604_800), ("1w", 604_800), (" 1.5h ", 5400)])
def test_a_relative_time_is_that_long_before_now(text: str, age_s: float) -> None:
    assert parse_when(text, now_s=NOW) == NOW - age_s


def test_an_iso_time_without_a_zone_is_utc() -> None:
    expected = datetime(2026, 12, 1, 10, 0, tzinfo=UTC).timestamp()
    assert parse_when("2026-12-01T10:00:00", now_s=NOW) == expected
    assert parse_when("2026-12-01T10:00:00Z", now_s=NOW) == expected
    assert parse_when("2026-12-01T11:00:00+01:00", now_s=NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2h ago", "-5m", "", "12"])
def test_anything_else_is_refused_naming_both_forms(text: str) -> None:
    with pytest.raises(InvalidValue, match=r"neither an ISO 8601 time .* nor an age"):
        parse_when(text, now_s=NOW, option="--since")


def test_a_window_that_ends_before_it_starts_and_an_unknown_type_are_refused() -> None:
    with pytest.raises(InvalidValue, match="--until is before --since"):
        Selection("crm", since_s=10.0, until_s=5.0)
    with pytest.raises(InvalidValue, match="not an event type"):
        Selection("crm", type="RECORDING_EXPLODED_EVENT")


def test_the_window_becomes_stream_entry_bounds() -> None:
    assert (Selection("crm").first_entry, Selection("crm").last_entry) == ("-", "+")
    window = Selection("crm", since_s=1.5, until_s=2.25)
    assert window.first_entry == "1500-0"
    assert window.last_entry == f"2250-{2**63 - 1}"


texts = st.none() | st.text(min_size=1, max_size=8)


@given(account=texts, route=texts, realm=texts, ucid=texts, type_=st.none()
       | st.sampled_from(EVENT_TYPES), since=st.none() | st.floats(0, 1e9))
def test_the_same_selection_is_the_same_job_and_survives_json(
        account: str | None, route: str | None, realm: str | None, ucid: str | None,
        type_: str | None, since: float | None) -> None:
    one = Selection("crm", since_s=since, account=account, route=route, realm=realm,
                    ucid=ucid, type=type_)
    again = Selection.from_json(one.to_json())
    assert again == one and again.job_id == one.job_id
    assert Selection("other", since_s=since, account=account, route=route, realm=realm,
                     ucid=ucid, type=type_).job_id != one.job_id


@given(account=st.sampled_from(["acme", "globex"]), route=st.sampled_from(["a", "b"]),
       type_=st.sampled_from(EVENT_TYPES), ucid=st.sampled_from(["1@x", "2@x"]))
def test_each_filter_selects_exactly_its_events(account: str, route: str, type_: str,
                                                ucid: str) -> None:
    event = validate_event({"type": type_, "account": account, "route": route,
                            "params": {"UCID": ucid}})
    assert Selection("d").wants(event)
    assert Selection("d", account=account, route=route, type=type_, ucid=ucid,
                     event_id=event.id).wants(event)
    assert not Selection("d", account=account + "x").wants(event)
    assert not Selection("d", route=route + "x").wants(event)
    assert not Selection("d", realm="nowhere").wants(event)
    assert not Selection("d", ucid=ucid + "x").wants(event)
    assert not Selection("d", event_id=event.id + "x").wants(event)
    others = [t for t in EVENT_TYPES if t != type_]
    assert not Selection("d", type=others[0]).wants(event)


def test_a_relative_window_is_the_same_job_whenever_it_is_resolved() -> None:
    """`--since 2h` run again a minute later resumes the same job (its window kept)."""
    first = Selection("crm", since_s=parse_when("2h", now_s=NOW), since="2h")
    later = Selection("crm", since_s=parse_when("2h", now_s=NOW + 60), since="2h")
    assert first.job_id == later.job_id
    assert later.window_of(first).since_s == first.since_s
    assert Selection("crm", since_s=first.since_s).job_id != first.job_id
    assert Selection("crm", since_s=first.since_s, since="3h").job_id != first.job_id
