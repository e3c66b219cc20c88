"""The event contract (SPEC 1 and 2): every refusal is a ValueError naming field and value."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from producer.constants import MAX_EVENT_BYTES
from producer.errors import InvalidEvent
from producer.events import (
    COMMON_PARAMS,
    EVENT_TYPES,
    MAX_LIST_ITEMS,
    MAX_PARAMS,
    RESERVED_PARAMS,
    TYPE_PARAMS,
    load_stored_event,
    parse_event_json,
    validate_event,
)

STARTED = "RECORDING_STARTED_EVENT"


def refused(data: Any) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        validate_event(data)
    assert isinstance(caught.value, ValueError)
    return caught.value


@pytest.mark.parametrize(("data", "field", "shown"), [
    ({"type": "RECORDING_STOPPED"}, "type", "'RECORDING_STOPPED'"),
    ({"type": "recording_started_event"}, "type", "'recording_started_event'"),
    ({"type": STARTED, "params": {"PAUSETIME": "1"}}, "params.PAUSETIME", "'PAUSETIME'"),
    ({"type": STARTED, "params": {"EVENTID": "x"}}, "params.EVENTID", "'EVENTID'"),
    ({"type": STARTED, "error": "boom"}, "error", "'boom'"),
    ({"type": STARTED, "result": "maybe"}, "result", "'maybe'"),
    ({"type": STARTED, "route": 7}, "route", "7"),
    ({"type": STARTED, "account": ["a"]}, "account", "['a']"),
    ({"type": STARTED, "realm": {"x": 1}}, "realm", "{'x': 1}"),
    ({"type": STARTED, "params": {"UCID": True}}, "params.UCID", "True"),
    ({"type": STARTED, "params": {"UCID": 1.5}}, "params.UCID", "1.5"),
    ({"type": STARTED, "params": {"UCID": {"a": 1}}}, "params.UCID", "{'a': 1}"),
    ({"type": STARTED, "params": {"UCID": ["a"]}}, "params.UCID", "['a']"),
    ({"type": STARTED, "params": {"CALLEDAORS": ["a", 1]}}, "params.CALLEDAORS", "1"),
    ({"type": STARTED, "params": {"UCID": "\ud800"}}, "params.UCID", "'\\ud800'"),
    ({"type": STARTED, "params": "UCID=1"}, "params", "'UCID=1'"),
    ({"type": STARTED, "id": "not-a-uuid"}, "id", "'not-a-uuid'"),
    ({"type": STARTED, "occurred_at": "yesterday"}, "occurred_at", "'yesterday'"),
    ({"type": STARTED, "occurred_at": "2026-11-24T20:01:02"}, "occurred_at",
     "'2026-11-24T20:01:02'"),
    ({"type": STARTED, "schema": 2}, "schema", "2"),
    ({"type": STARTED, "colour": "red"}, "colour", "'colour'"),
])
def test_invalid_event_is_refused_naming_the_field_and_the_bad_value(
        data: dict[str, Any], field: str, shown: str) -> None:
    error = refused(data)
    assert error.field == field
    assert shown in str(error)


def test_a_json_array_is_not_an_event() -> None:
    assert refused([1, 2]).field == "event"


def test_event_over_64_kib_is_refused_with_its_size() -> None:
    error = refused({"type": STARTED, "params": {"UCID": "x" * MAX_EVENT_BYTES}})
    assert error.field == "event" and error.value > MAX_EVENT_BYTES
    assert f"{error.value} bytes" in str(error)


def test_too_many_params_are_refused_before_any_is_looked_at() -> None:
    params = {f"P{i:03d}": "v" for i in range(MAX_PARAMS + 1)}
    error = refused({"type": STARTED, "params": params})
    assert error.field == "params" and error.value == MAX_PARAMS + 1
    assert f"over the limit of {MAX_PARAMS}" in str(error)


def test_over_long_calledaors_list_is_refused() -> None:
    error = refused({"type": STARTED, "params": {"CALLEDAORS": ["a"] * (MAX_LIST_ITEMS + 1)}})
    assert error.field == "params.CALLEDAORS" and error.value == MAX_LIST_ITEMS + 1


def test_a_huge_bad_value_is_quoted_short_in_the_message() -> None:
    error = refused({"type": STARTED, "params": {"UCID": [["x" * 10_000]]}})
    assert len(str(error)) < 400 and "characters)" in str(error)


def test_valid_event_keeps_its_fields_and_normalises_the_time() -> None:
    event_id = str(uuid.uuid4())
    event = validate_event({
        "type": "SEGMENT_ENDED_EVENT", "id": event_id, "result": "failure", "error": "disk",
        "route": "r", "account": "a", "realm": "x", "occurred_at": "2026-11-24T21:01:02.123+01:00",
        "params": {"UCID": "u", "FILESIZE": 12, "CALLEDAORS": ["sip:a", "sip:b"]},
    })
    assert (event.id, event.occurred_at) == (event_id, "2026-11-24T20:01:02.123Z")
    assert event.values()["CALLEDAORS"] == "sip:a,sip:b"
    assert event.values()["FILESIZE"] == "12"
    assert event.values()["ERROR"] == "disk" and event.values()["ROUTE"] == "r"


def test_missing_id_and_time_are_made_by_the_publisher_side() -> None:
    event = validate_event({"type": STARTED}, default_id="d", default_occurred_at="t")
    assert (event.id, event.occurred_at, event.result) == ("d", "t", "success")
    fresh = validate_event({"type": STARTED})
    assert uuid.UUID(fresh.id) and fresh.occurred_at.endswith("Z")
    assert datetime.fromisoformat(fresh.occurred_at.replace("Z", "+00:00")).tzinfo == UTC


def test_each_type_accepts_exactly_its_parameters() -> None:
    for event_type in EVENT_TYPES:
        allowed = (set(COMMON_PARAMS) | set(TYPE_PARAMS[event_type])) - RESERVED_PARAMS
        validate_event({"type": event_type, "params": {name: "1" for name in allowed}})
        others = {n for t in TYPE_PARAMS.values() for n in t} - allowed
        for name in others:
            assert refused({"type": event_type, "params": {name: "1"}}).field == f"params.{name}"


@pytest.mark.parametrize("raw", [
    b"\xff\xfe{}",
    "[" * 100_000 + "]" * 100_000,
    '{"type": "RECORDING_STARTED_EVENT", "params": {"UCID": ' + "[" * 5000 + "]" * 5000 + "}}",
    '{"type": "RECORDING_STARTED_EVENT", "params": {"UCID": "' + "x" * 400_000 + '"}}',
    '{"type": "RECORDING_STARTED_EVENT", "params": {"DURATION": ' + "9" * 5000 + "}}",
    "not json at all",
    "",
])
def test_hostile_stream_entries_are_refused_with_invalid_event_only(raw: bytes | str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        parse_event_json(raw)
    assert caught.value.field in ("event", "params.UCID") and len(str(caught.value)) < 400


def test_stream_entry_json_round_trips_through_validation() -> None:
    event = validate_event({"type": STARTED, "params": {"UCID": "é\r\n", "CALLEDAORS": []}})
    again = parse_event_json(event.to_json().encode("utf-8"))
    assert again == event and json.loads(event.to_json())["schema"] == 1


def test_a_stored_event_loads_back_equal_without_revalidation() -> None:
    event = validate_event({"type": "SEGMENT_ENDED_EVENT", "route": "r", "result": "failure",
                            "error": "disk full",
                            "params": {"UCID": "u-1", "CALLEDAORS": ["a@x", "b@y"],
                                       "SEGMENTID": 3}})
    assert load_stored_event(event.to_json()) == event
    assert load_stored_event(event.to_json().encode()) == event


def test_a_stored_event_of_another_schema_gets_the_full_check() -> None:
    data = validate_event({"type": "RECORDING_STARTED_EVENT", "route": "r"}).to_dict()
    data["schema"], data["type"] = 99, "NOT_AN_EVENT"
    with pytest.raises(InvalidEvent):
        load_stored_event(json.dumps(data))
