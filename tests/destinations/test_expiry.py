"""Expiry's pure parts (workers/expiry.py) and the ``expire_after_s`` field: which limit
applies, when the clock starts, how long the next wait may be, what is refused at save,
and that the field survives to_dict, a file round trip, PATCH and the JSON Schema."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from producer.events import EVENT_TYPES, Event, format_timestamp
from workers.admin.bodies import merge_patch
from workers.destinations.expiry import (
    MAX_EXPIRE_AFTER_S,
    WAKE_MARGIN_S,
    Expiry,
    capped_wait_s,
    clock_start_s,
    expired_reason,
    expires_at_s,
    expiry_for,
    limit_for,
    occurred_at_s,
    reason,
)
from workers.destinations.rules import parse_destination
from workers.errors import InvalidDestination

STARTED, ENDED = "RECORDING_STARTED_EVENT", "RECORDING_ENDED_EVENT"
seconds = st.floats(min_value=0.001, max_value=MAX_EXPIRE_AFTER_S, allow_nan=False)
moments = st.floats(min_value=1e9, max_value=4e9, allow_nan=False)


def dest(**fields: Any) -> dict[str, Any]:
    return {"name": "d", "events": [STARTED, ENDED], "url": "https://10.0.0.5/x", **fields}


def refusals(**fields: Any) -> list[tuple[str, Any, str]]:
    with pytest.raises(InvalidDestination) as caught:
        parse_destination(dest(**fields))
    return [(e.field, e.value, str(e)) for e in caught.value.errors]


# -- which limit applies ----------------------------------------------------------------------
@given(limit=seconds, event_type=st.sampled_from(EVENT_TYPES))
def test_one_number_is_the_limit_of_every_event_type(limit: float, event_type: str) -> None:
    assert limit_for(limit, event_type) == limit


@given(limits=st.dictionaries(st.sampled_from(EVENT_TYPES), seconds),
       event_type=st.sampled_from(EVENT_TYPES))
def test_a_map_limits_only_the_types_it_names(limits: dict[str, float], event_type: str
                                              ) -> None:
    assert limit_for(limits, event_type) == limits.get(event_type)


def test_no_expire_after_means_never_expired() -> None:
    assert limit_for(None, STARTED) is None
    assert expiry_for(None, STARTED, occurred_at="2026-11-24T20:01:02.123Z",
                      first_at_s=0.0) is None
    assert capped_wait_s(600.0, 0.0, None) == 600.0


# -- when the clock starts ---------------------------------------------------------------------
def test_the_clock_starts_at_the_events_occurred_at() -> None:
    occurred = datetime(2026, 11, 24, 20, 1, 2, 123000, tzinfo=UTC)
    text = format_timestamp(occurred)
    assert occurred_at_s(text) == pytest.approx(occurred.timestamp())
    found = expiry_for({STARTED: 120}, STARTED, occurred_at=text,
                       first_at_s=occurred.timestamp() + 30)
    assert found == Expiry(120.0, pytest.approx(occurred.timestamp() + 120))
    assert expires_at_s(120, STARTED, occurred_at=text,
                        first_at_s=occurred.timestamp() + 5) == pytest.approx(
                            occurred.timestamp() + 120)


@given(occurred=moments, first_at=moments)
def test_the_clock_never_starts_after_the_first_try(occurred: float, first_at: float) -> None:
    # a recorder whose clock runs ahead cannot stretch the limit
    start = clock_start_s(occurred, first_at)
    assert start == min(occurred, first_at)


@given(occurred=moments, first_at=moments, replayed=moments)
def test_a_replay_restarts_the_clock(occurred: float, first_at: float, replayed: float) -> None:
    start = clock_start_s(occurred, first_at, replayed)
    assert start >= replayed and start == max(min(occurred, first_at), replayed)


@pytest.mark.parametrize("text", ["", "yesterday", "2026-11-24T20:01:02", None])
def test_an_unreadable_occurred_at_starts_the_clock_at_the_first_try(text: Any) -> None:
    assert occurred_at_s(text) is None
    assert clock_start_s(occurred_at_s(text), 1000.0) == 1000.0


# -- how long the next wait may be -------------------------------------------------------------
@given(wait=st.floats(min_value=0, max_value=1e6), now=moments, limit=seconds,
       started_ago=st.floats(min_value=0, max_value=2e6))
def test_no_wait_ends_later_than_just_after_the_expiry(wait: float, now: float, limit: float,
                                                       started_ago: float) -> None:
    expiry = Expiry(limit, now - started_ago + limit)
    capped = capped_wait_s(wait, now, expiry)
    assert 0 <= capped <= wait
    assert now + capped <= max(now, expiry.at_s) + WAKE_MARGIN_S + 1e-6
    if capped < wait:  # cut: the run after it finds the notification expired
        assert expiry.expired(now + capped)
    else:
        assert capped == wait


def test_expired_exactly_at_its_moment() -> None:
    expiry = Expiry(3.0, 1003.0)
    assert not expiry.expired(1002.999)
    assert expiry.expired(1003.0) and expiry.left_s(1004.0) == 0.0


@pytest.mark.parametrize(("limit", "text"), [(120.0, "expired after 120 s"),
                                             (2.5, "expired after 2.5 s"),
                                             (3, "expired after 3 s")])
def test_the_reason_names_the_limit(limit: float, text: str) -> None:
    assert reason(limit) == text == Expiry(float(limit), 0.0).reason


def test_a_parked_notifications_reason_uses_its_event_types_limit() -> None:
    d = parse_destination(dest(expire_after_s={STARTED: 2, ENDED: 7}))
    raw = Event(type=ENDED, id="e", occurred_at="2026-11-24T20:01:02.123Z").to_json().encode()
    assert expired_reason(d.expire_after_s, raw) == "expired after 7 s"
    assert expired_reason(d.expire_after_s, None) == "expired after 2 s"  # event gone: the shortest


# -- validation at save ------------------------------------------------------------------------
def test_a_number_or_a_map_of_the_destinations_events_is_accepted() -> None:
    assert parse_destination(dest(expire_after_s=30)).expire_after_s == 30.0
    assert parse_destination(dest(expire_after_s=0.5)).expire_after_s == 0.5
    assert parse_destination(dest(expire_after_s={STARTED: 120})).expire_after_s == {
        STARTED: 120.0}
    assert parse_destination(dest(expire_after_s=None)).expire_after_s is None
    assert parse_destination(dest(expire_after_s={})).expire_after_s is None
    assert parse_destination(dest()).expire_after_s is None


@pytest.mark.parametrize("bad", [0, -1, MAX_EXPIRE_AFTER_S + 1, float("inf"), float("nan"),
                                 True, "120", [120], 10**400])
def test_a_bad_number_is_one_clear_error(bad: Any) -> None:
    (error,) = refusals(expire_after_s=bad)
    field, value, message = error
    assert field == "expire_after_s"
    assert value is bad or (value != value and bad != bad)  # NaN is not equal to itself
    assert "destination 'd': expire_after_s:" in message
    assert "number of seconds in (0, 604800]" in message and "map" in message


def test_each_bad_map_entry_is_its_own_error() -> None:
    errors = refusals(events=[ENDED], expire_after_s={STARTED: 120, ENDED: 0,
                                                     "NO_SUCH_EVENT": 5})
    fields = {field: (value, message) for field, value, message in errors}
    assert set(fields) == {f"expire_after_s.{STARTED}", f"expire_after_s.{ENDED}",
                           "expire_after_s.NO_SUCH_EVENT"}
    value, message = fields[f"expire_after_s.{STARTED}"]
    assert value == STARTED and "not one of this destination's events (RECORDING_ENDED" in message
    value, message = fields[f"expire_after_s.{ENDED}"]
    assert value == 0 and "0 is not a number of seconds" in message


def test_every_key_works_for_a_destination_of_all_events() -> None:
    limits = {t: 10.0 for t in EVENT_TYPES}
    assert parse_destination(dest(events="all", expire_after_s=limits)).expire_after_s == limits


# -- the face preset ---------------------------------------------------------------------------
def face(**fields: Any) -> dict[str, Any]:
    return {"name": "face", "preset": "face", "url": "https://10.0.0.5:8443/Face/eventNotify",
            **fields}


def test_face_expires_recording_started_after_120_s_and_never_ended() -> None:
    d = parse_destination(face())
    assert d.expire_after_s == {STARTED: 120.0}
    assert limit_for(d.expire_after_s, STARTED) == 120.0
    assert limit_for(d.expire_after_s, ENDED) is None


def test_face_defaults_give_way_to_the_users_fields() -> None:
    assert parse_destination(face(expire_after_s=30)).expire_after_s == 30.0
    assert parse_destination(face(expire_after_s=None)).expire_after_s is None
    # events narrowed to ENDED: the preset's STARTED limit is dropped, not an error
    narrowed = parse_destination(face(events=[ENDED], params=""))
    assert narrowed.expire_after_s is None
    # but the user's own key for an event it does not take is refused
    with pytest.raises(InvalidDestination, match="not one of this destination's events"):
        parse_destination(face(events=[ENDED], params="", expire_after_s={STARTED: 5}))


# -- round trips: to_dict, file, PATCH, schema -------------------------------------------------
@pytest.mark.parametrize("fields", [
    dest(expire_after_s=45), dest(expire_after_s={ENDED: 3.5}), dest(),
    face(), face(expire_after_s=None), face(expire_after_s={ENDED: 60, STARTED: 90})])
def test_to_dict_and_back_keeps_the_field(fields: dict[str, Any]) -> None:
    d = parse_destination(fields)
    again = parse_destination(d.to_dict())
    assert again == d and again.expire_after_s == d.expire_after_s


def test_a_face_destination_without_expiry_stays_without_after_a_reload() -> None:
    out = parse_destination(face(expire_after_s=None)).to_dict()
    assert out["expire_after_s"] is None  # written, so the preset cannot fill it back
    assert "expire_after_s" not in parse_destination(dest()).to_dict()


def test_the_file_format_round_trips_the_field() -> None:
    from workers.destinations import dump_file, load_file

    yaml_text = (f"destinations:\n  - name: d\n    events: [{STARTED}, {ENDED}]\n"
                 f"    url: https://10.0.0.5/x\n    expire_after_s: {{{STARTED}: 120}}\n")
    (loaded,) = load_file(yaml_text)
    assert loaded.expire_after_s == {STARTED: 120.0}
    (again,) = load_file(dump_file([loaded]))
    assert again == loaded


def test_patch_keeps_merges_and_clears_the_field() -> None:
    stored = parse_destination(dest(expire_after_s={STARTED: 120}))
    kept = parse_destination(merge_patch(stored.to_dict(), {"timeout_s": 5}), existing=stored)
    assert kept.expire_after_s == {STARTED: 120.0}
    merged = parse_destination(merge_patch(stored.to_dict(), {"expire_after_s": {ENDED: 9}}),
                               existing=stored)
    assert merged.expire_after_s == {STARTED: 120.0, ENDED: 9.0}
    one_key_off = parse_destination(
        merge_patch(stored.to_dict(), {"expire_after_s": {STARTED: None}}), existing=stored)
    assert one_key_off.expire_after_s is None
    cleared = parse_destination(merge_patch(stored.to_dict(), {"expire_after_s": None}),
                                existing=stored)
    assert cleared.expire_after_s is None
    # on a face destination, null puts the preset's default back (SPEC 8: null -> default)
    face_dest = parse_destination(face(expire_after_s=5))
    back = parse_destination(merge_patch(face_dest.to_dict(), {"expire_after_s": None}),
                             existing=face_dest)
    assert back.expire_after_s == {STARTED: 120.0}


def test_the_json_schema_describes_the_field() -> None:
    import pydantic

    from workers.destinations.schema import DestinationIn, DestinationOut, DestinationPatch

    base = {"name": "d", "events": [STARTED], "url": "https://10.0.0.5/x"}
    for ok in (30, 0.5, {STARTED: 120}, None):
        DestinationIn.model_validate({**base, "expire_after_s": ok})
    for bad in (0, -2, MAX_EXPIRE_AFTER_S + 1, {"NO_SUCH_EVENT": 3}, {STARTED: 0}):
        with pytest.raises(pydantic.ValidationError):
            DestinationIn.model_validate({**base, "expire_after_s": bad})
    DestinationPatch.model_validate({"expire_after_s": {STARTED: None}})
    DestinationOut.model_validate(parse_destination(face()).to_dict())
    DestinationOut.model_validate(parse_destination(face(expire_after_s=None)).to_dict())


def test_the_clock_of_a_real_event_is_its_occurred_at_not_the_publish() -> None:
    # an event that occurred 5 minutes before recnotify first had it has 0 s left of 120
    occurred = datetime.now(UTC) - timedelta(minutes=5)
    found = expiry_for({STARTED: 120}, STARTED, occurred_at=format_timestamp(occurred),
                       first_at_s=datetime.now(UTC).timestamp())
    assert found is not None and found.expired(datetime.now(UTC).timestamp())


# -- the parking lot's expiry on a real Redis ----------------------------------------------------
def test_the_sweep_buries_expired_parked_notifications_before_choosing_a_probe(
        redis_client: Any, key_prefix: str) -> None:
    import json
    import time

    from tests.state.test_parking import Source
    from workers.config.keys import Keys
    from workers.destinations.cache import ConfigCache
    from workers.http.request import notification_id
    from workers.state.circuit import CircuitBreaker
    from workers.state.parking import ParkingLot
    from workers.state.schedule import schedule_member

    keys = Keys(key_prefix)
    config = ConfigCache(Source(dest(expire_after_s={STARTED: 5, ENDED: 9},
                                     circuit={"failures": 1, "reset_s": 0.2})))
    config.refresh()
    lot, breaker = ParkingLot(redis_client, keys), CircuitBreaker(redis_client, keys)
    d = config.get("d")
    assert d is not None
    now = time.time()
    for event_id, event_type in (("old", ENDED), ("young", STARTED), ("ageless", STARTED)):
        redis_client.set(keys.event(event_id), Event(
            type=event_type, id=event_id, occurred_at="2026-11-24T20:01:02.123Z").to_json())
    breaker.record_failure("d", threshold=1, reset_s=0.2)
    pipe = redis_client.pipeline(transaction=True)
    lot.park(pipe, "old", d, now - 20, expires_at=now - 1)  # parked first: the probe's turn
    lot.park(pipe, "young", d, now, expires_at=now + 600)
    lot.park(pipe, "ageless", d, now + 1)  # no expiry given: never buried for it
    pipe.execute()
    assert redis_client.zcard(keys.parked_expiry("d")) == 2
    time.sleep(0.3)  # reset_s passed: the sweep releases a probe
    swept = lot.sweep(config)
    # Then the expired one is buried with its own type's reason, and the probe is another
    assert (swept.buried, swept.released) == (1, 1)
    assert redis_client.hget(keys.notification(notification_id("old", "d")), "state") == b"dead"
    (record,) = [json.loads(r) for r in redis_client.lrange(keys.records, 0, -1)]
    assert record["reason"] == "expired after 9 s"
    assert redis_client.hgetall(keys.metric("dead_letters")) == {b"d|expired": b"1"}
    assert [json.loads(m)[0] for m in redis_client.zrange(keys.schedule, 0, -1)] == ["young"]
    assert lot.parked("d") == 1  # the released one's expiry entry goes when due (lazily)
    assert lot.sweep(config).buried == 0
    assert schedule_member("ageless", "d").encode() in redis_client.zrange(keys.parked("d"), 0, -1)

