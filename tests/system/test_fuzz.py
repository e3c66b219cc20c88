"""Fuzzing the real validation and rendering path (issue 7, hostile input).

At least 10,000 generated events, valid and invalid (random types, parameter
names and values: non-ASCII, control characters, lone surrogates, ints, bools,
floats, lists, nested objects), go through ``producer.events.validate_event``
(or ``parse_event_json`` from raw JSON) and ``workers.http.templates.render_url``
with a template that uses every placeholder of the event's type. Each one is
either refused with a ValueError or rendered into a URL whose query, parsed by
``parse_qs``, gives back exactly the values the event was given.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producer.events import (
    COMMON_PARAMS,
    EVENT_TYPES,
    TYPE_PARAMS,
    Event,
    params_for,
    parse_event_json,
    validate_event,
)
from workers.http.templates import render_url

BASE = "https://10.0.0.5:8443/Face/eventNotify?fixed=1"
ALL_NAMES = sorted(set(COMMON_PARAMS) | {n for names in TYPE_PARAMS.values() for n in names})
EXAMPLES_PER_TEST = 2600
FUZZ = settings(max_examples=EXAMPLES_PER_TEST, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: Any character at all: controls, CR/LF, non-ASCII, lone surrogates.
any_char = st.characters(exclude_categories=[])
hostile_text = st.text(any_char, max_size=24)
nice_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=24)
scalars = st.one_of(hostile_text, nice_text, st.integers(), st.booleans(), st.floats(),
                    st.none())
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(nice_text, inner, max_size=3)), max_leaves=8)
type_names = st.one_of(st.sampled_from(EVENT_TYPES), nice_text)
param_names = st.one_of(st.sampled_from(ALL_NAMES), nice_text)


def template_for(event_type: str) -> str:
    """Every placeholder of the type, each under its own query name."""
    return "&".join(f"p_{name}=%{name}%" for name in sorted(params_for(event_type)))


def expected_values(data: dict[str, Any], event: Event) -> dict[str, str]:
    """What each placeholder must render to, computed from the input, not from Event."""
    out = {
        "EVENT": data["type"], "EVENTID": event.id, "TIMESTAMP": event.occurred_at,
        "RESULT": data.get("result") or "success", "ERROR": data.get("error") or "",
        "ROUTE": data.get("route") or "", "ACCOUNT": data.get("account") or "",
        "REALM": data.get("realm") or "",
    }
    params = data.get("params") or {}
    for name in params_for(data["type"]):
        if name in out:
            continue
        value = params.get(name)
        out[name] = "" if value is None else ",".join(value) if isinstance(value, list) \
            else str(value)
    return out


def check(data: Any, validate: Callable[[], Event]) -> str:
    """'refused' or 'rendered' (after proving the round trip); anything else fails."""
    try:
        event = validate()
    except ValueError:
        return "refused"
    url = render_url(BASE, template_for(event.type), event.values())
    query = parse_qs(urlsplit(url).query, keep_blank_values=True, strict_parsing=True)
    assert query.pop("fixed") == ["1"]
    got = {key.removeprefix("p_"): value for key, value in query.items()}
    assert got == {k: [v] for k, v in expected_values(data, event).items()}, url
    assert "\r" not in url and "\n" not in url and " " not in url
    return "rendered"


def run(strategy: st.SearchStrategy[Any], via_json: bool = False) -> Counter[str]:
    counts: Counter[str] = Counter()

    @FUZZ
    @given(strategy)
    def one(data: Any) -> None:
        if via_json:
            raw = json.dumps(data, ensure_ascii=False).encode("utf-8", "surrogatepass")
            counts[check(data, lambda: parse_event_json(raw))] += 1
        else:
            counts[check(data, lambda: validate_event(data))] += 1

    one()
    assert sum(counts.values()) >= EXAMPLES_PER_TEST - 100, counts
    return counts


# Mostly valid: known types and names, hostile string values.
plausible_events = st.fixed_dictionaries(
    {"type": st.sampled_from(EVENT_TYPES)},
    optional={
        "result": st.sampled_from(["success", "failure"]),
        "route": hostile_text, "account": hostile_text, "realm": hostile_text,
        "params": st.dictionaries(st.sampled_from(ALL_NAMES), st.one_of(
            hostile_text, nice_text, st.integers(), st.lists(nice_text, max_size=4)),
            max_size=12),
    },
).map(lambda d: {**d, "error": "e\r\nX: y"} if d.get("result") == "failure" else d)

# Anything: random types, names, values, nesting and extra fields.
wild_events = st.dictionaries(
    st.sampled_from(["type", "result", "error", "route", "account", "realm", "params", "id",
                     "occurred_at", "schema", "extra"]),
    values, max_size=8,
).flatmap(lambda d: st.fixed_dictionaries({
    **{k: st.just(v) for k, v in d.items()},
    "type": type_names,
    "params": st.dictionaries(param_names, values, max_size=6),
}))


def test_plausible_events_with_hostile_values_render_and_round_trip() -> None:
    counts = run(plausible_events)
    assert counts["rendered"] > EXAMPLES_PER_TEST / 4 and counts["refused"] > 0, counts


def test_wild_events_are_refused_or_round_trip() -> None:
    counts = run(wild_events)
    assert counts["refused"] > EXAMPLES_PER_TEST / 2, counts


def test_events_read_back_from_raw_stream_json_are_refused_or_round_trip() -> None:
    counts = run(st.one_of(plausible_events, wild_events), via_json=True)
    assert counts["rendered"] > 0 and counts["refused"] > 0, counts


def test_calledaors_lists_and_integers_round_trip() -> None:
    aors = st.lists(st.text(st.characters(exclude_categories=["Cs"], exclude_characters=","),
                            min_size=1, max_size=20), max_size=6)
    events = st.fixed_dictionaries({
        "type": st.sampled_from(EVENT_TYPES),
        "params": st.fixed_dictionaries({"CALLEDAORS": aors, "UCID": st.integers()}),
    })
    counts = run(events)
    assert counts["rendered"] == sum(counts.values()), counts
