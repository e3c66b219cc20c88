"""Destination filters (workers/filters.py): what they select, what they refuse at save.

Pure parts, so plain values in and out; the end-to-end proof with workers and a
receiver is tests/test_filters_end_to_end.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from producer.events import EVENT_TYPES, ParamValue, params_for, validate_event
from tests.destinations.test_routing import matches
from workers.destinations import dump_file, load_file, parse_destination
from workers.destinations.filters import (
    MAX_FILTER_DEPTH,
    MAX_FILTER_VALUES,
    Filter,
    InvalidFilter,
    compile_filter,
    event_values,
)
from workers.destinations.routing import RoutingIndex
from workers.errors import InvalidDestination

SEG = ("SEGMENT_ENDED_EVENT",)


def ok(spec: Any, types: tuple[str, ...] = SEG) -> Filter:
    compiled = compile_filter(spec, types)
    assert compiled is not None
    return compiled


def refused(spec: Any, types: tuple[str, ...] = SEG) -> str:
    with pytest.raises(InvalidFilter) as caught:
        compile_filter(spec, types)
    assert all(p.field == "filter" for p in caught.value.problems)
    return str(caught.value)


# -- what a filter selects -----------------------------------------------------------------
def test_only_segments_over_ten_seconds_compares_numerically() -> None:
    over_10 = ok({"DURATION": {"$gt": 10}})
    assert over_10.test({"DURATION": "12"}) and over_10.test({"DURATION": 11})
    assert over_10.test({"DURATION": "10.5"})
    # "9" > 10 would be true as text; numbers compare as numbers
    assert not over_10.test({"DURATION": "9"}) and not over_10.test({"DURATION": 10})
    assert not over_10.test({"DURATION": "abc"}) and not over_10.test({"DURATION": ""})
    assert not over_10.test({})


def test_only_calls_to_certain_aors_matches_any_item_of_calledaors() -> None:
    aors = ok({"$or": [{"CALLEDAORS": {"$contains": "sip:100@"}},
                       {"CALLEDAORS": {"$startsWith": "sip:200@"}}]})
    assert aors.test({"CALLEDAORS": ["sip:7@x", "sip:100@pbx.example"]})
    assert aors.test({"CALLEDAORS": ["sip:200@y"]})
    assert aors.test({"CALLEDAORS": "sip:100@a"})  # a single string from a foreign producer
    assert not aors.test({"CALLEDAORS": ["sip:1000@x", "sip:7@x"]})
    assert not aors.test({"CALLEDAORS": []}) and not aors.test({})


def test_only_ascii_decimal_text_reads_as_a_number() -> None:
    over_10 = ok({"DURATION": {"$gt": 10}})
    for text in ["+11", "11.", ".5e2", "1e3", " 11", "11 ", "\u0661\u0662", "inf", "0x20", "1_000"]:
        assert over_10.test({"DURATION": text}) is (text in ("+11", "11.")), text


def test_a_bare_value_is_eq_and_a_string_operand_compares_as_text() -> None:
    seq3 = ok({"SEQUENCE": "3"})
    assert seq3.test({"SEQUENCE": 3}) and seq3.test({"SEQUENCE": "3"})
    assert not seq3.test({"SEQUENCE": "03"})
    assert ok({"SEQUENCE": 3}).test({"SEQUENCE": "03"})  # a number operand: numerically
    assert ok({"SEQUENCE": 3}).test({"SEQUENCE": "3.0"})


def test_an_absent_parameter_matches_only_neq_nin_and_exists_false() -> None:
    absent: dict[str, ParamValue] = {}
    for spec, expected in [({"$eq": "x"}, False), ({"$neq": "x"}, True), ({"$in": ["x"]}, False),
                           ({"$nin": ["x"]}, True), ({"$gt": 0}, False), ({"$lte": "z"}, False),
                           ({"$startsWith": ""}, False), ({"$contains": ""}, False),
                           ({"$exists": True}, False), ({"$exists": False}, True)]:
        assert ok({"FILENAME": spec}).test(absent) is expected, spec
    assert ok({"FILENAME": {"$exists": True}}).test({"FILENAME": ""})


def test_scope_keys_and_the_events_own_fields_are_filterable() -> None:
    event = validate_event({"type": "SEGMENT_ENDED_EVENT", "route": "support", "account": "acme",
                            "params": {"DURATION": "42", "CALLEDAORS": ["sip:100@x"]}})
    values = event_values(event)
    assert values["ROUTE"] == "support" and values["EVENT"] == "SEGMENT_ENDED_EVENT"
    assert "REALM" not in values and "ERROR" not in values  # absent, not ""
    assert ok({"ROUTE": "support", "ACCOUNT": {"$in": ["acme", "other"]},
               "REALM": {"$exists": False}, "RESULT": "success"}).matches(event)
    assert not ok({"ACCOUNT": {"$neq": "acme"}}).matches(event)
    later = ok({"TIMESTAMP": {"$gte": "2000-01-01T00:00:00.000Z"}})  # ISO text: chronological
    assert later.matches(event)


def test_an_object_of_operators_needs_all_of_them() -> None:
    between = ok({"DURATION": {"$gte": 10, "$lt": 60}})
    assert [between.test({"DURATION": d}) for d in (9, 10, 59, 60)] == [False, True, True, False]


def test_empty_or_null_filter_is_no_filter() -> None:
    assert compile_filter(None, SEG) is None and compile_filter({}, SEG) is None


# -- properties ------------------------------------------------------------------------------
NAMES = ("DURATION", "ROUTE", "CALLEDAORS", "FILENAME")
SCALARS = st.one_of(st.integers(-20, 20),
                    st.sampled_from(["", "5", "10", "10.5", "-3", "abc", "sip:1@x", "0x10"]))
TEXTS = st.sampled_from(["", "1", "sip:", "a", "x"])
OP_PAIRS = st.one_of(
    st.tuples(st.sampled_from(["$eq", "$neq", "$gt", "$gte", "$lt", "$lte"]), SCALARS),
    st.tuples(st.sampled_from(["$in", "$nin"]), st.lists(SCALARS, min_size=1, max_size=4)),
    st.tuples(st.just("$exists"), st.booleans()),
    st.tuples(st.sampled_from(["$startsWith", "$contains"]), TEXTS),
)
CONDITIONS = st.one_of(SCALARS, st.lists(OP_PAIRS, min_size=1, max_size=3).map(dict))
LEAVES = st.dictionaries(st.sampled_from(NAMES), CONDITIONS, min_size=1, max_size=2)


def nested(levels: int) -> st.SearchStrategy[dict[str, Any]]:
    """Filters of at most ``levels`` logical levels (each adds at most two JSON levels)."""
    if levels == 0:
        return LEAVES
    inner = nested(levels - 1)
    return st.one_of(
        LEAVES,
        st.lists(inner, min_size=1, max_size=3).map(lambda fs: {"$and": fs}),
        st.lists(inner, min_size=1, max_size=3).map(lambda fs: {"$or": fs}),
        inner.map(lambda f: {"$not": f}))


FILTERS = nested(4)
VALUE = st.one_of(SCALARS, st.sampled_from(["sip:100@x", "a1", "x"]))
VALUES = st.fixed_dictionaries({}, optional={
    "DURATION": VALUE, "ROUTE": VALUE, "FILENAME": VALUE,
    "CALLEDAORS": st.lists(st.sampled_from(["sip:1@x", "sip:100@y", "a", "10"]), max_size=3)})


def _num(v: ParamValue) -> float | None:
    if isinstance(v, int):
        return v
    return float(v) if isinstance(v, str) and re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)", v) else None


def reference(spec: dict[str, Any], values: dict[str, Any]) -> bool:
    """A direct reading of the documented semantics (the compiled closures must agree)."""
    def one(op: str, operand: Any, v: ParamValue) -> bool:
        text = str(v)
        if op in ("$startsWith", "$contains"):
            return text.startswith(operand) if op == "$startsWith" else operand in text
        if op in ("$in",):
            return any(one("$eq", o, v) for o in operand)
        if isinstance(operand, str):
            a, b = text, operand
        else:
            n = _num(v)
            if n is None:
                return False
            a, b = n, operand  # type: ignore[assignment]
        return {"$eq": a == b, "$gt": a > b, "$gte": a >= b, "$lt": a < b, "$lte": a <= b}[op]

    def field(name: str, op: str, operand: Any) -> bool:
        if op == "$exists":
            return (name in values) is operand
        if op in ("$neq", "$nin"):
            return not field(name, {"$neq": "$eq", "$nin": "$in"}[op], operand)
        if name not in values:
            return False
        v = values[name]
        return any(one(op, operand, x) for x in (v if isinstance(v, list) else [v]))

    results = []
    for key, cond in spec.items():
        if key == "$and":
            results.append(all(reference(f, values) for f in cond))
        elif key == "$or":
            results.append(any(reference(f, values) for f in cond))
        elif key == "$not":
            results.append(not reference(cond, values))
        elif isinstance(cond, dict):
            results.append(all(field(key, op, operand) for op, operand in cond.items()))
        else:
            results.append(field(key, "$eq", cond))
    return all(results)


@given(FILTERS, VALUES)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_compiled_filter_agrees_with_a_direct_reading_of_the_rules(
        spec: dict[str, Any], values: dict[str, Any]) -> None:
    assert ok(spec).test(values) is reference(spec, values)


@given(FILTERS, VALUES)
def test_not_inverts_and_and_of_one_is_itself(spec: dict[str, Any], values: dict[str, Any]) -> None:
    result = ok(spec).test(values)
    assert ok({"$not": spec}).test(values) is (not result)
    assert ok({"$and": [spec]}).test(values) is result
    assert ok({"$or": [spec]}).test(values) is result


@given(st.sampled_from(NAMES), st.lists(SCALARS, min_size=1, max_size=5), VALUES)
def test_in_is_or_of_eq_and_nin_is_not_in(name: str, items: list[Any],
                                          values: dict[str, Any]) -> None:
    within = ok({name: {"$in": items}}).test(values)
    assert within is ok({"$or": [{name: {"$eq": i}} for i in items]}).test(values)
    assert ok({name: {"$nin": items}}).test(values) is ok({"$not": {name: {"$in": items}}}).test(
        values)
    assert ok({name: {"$nin": items}}).test(values) is (not within)


@given(FILTERS)
def test_the_source_compiles_back_to_the_same_filter(spec: dict[str, Any]) -> None:
    compiled = ok(spec)
    assert ok(compiled.source) == compiled


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.sampled_from(["$eq", "$or", "$in", "$gt", "DURATION", "CALLEDAORS", "$not", "$and"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(max_size=6) | st.sampled_from(
            ["$and", "$or", "$not", "$in", "$gt", "$exists", "DURATION", "ROUTE", "CALLEDAORS"]),
        inner, max_size=4),
    max_leaves=25)


@given(JSON, VALUES)
@settings(max_examples=500)
def test_arbitrary_json_is_a_filter_or_an_invalid_filter_never_another_error(
        spec: Any, values: dict[str, Any]) -> None:
    try:
        compiled = compile_filter(spec, SEG)
    except InvalidFilter as exc:
        assert exc.problems and all(p.field == "filter" and p.message for p in exc.problems)
        assert "\n" not in str(exc)
        return
    assert compiled is None or compiled.test(values) in (True, False)


# -- what is refused at save, and how it is said ---------------------------------------------
def test_unknown_operator_is_refused_with_the_nearest_one() -> None:
    message = refused({"DURATION": {"$gtt": 10}})
    assert "DURATION.$gtt: unknown operator '$gtt'" in message and "did you mean $gt?" in message
    assert "unknown operator '$xor'" in refused({"$xor": [{"DURATION": 1}]})
    assert "$gt applies to a parameter" in refused({"$gt": 1})
    assert "$or combines filters, not values" in refused({"DURATION": {"$or": [1]}})


@pytest.mark.parametrize(("spec", "words"), [
    ({"DURATION": {"$gt": True}}, "True is not a value"),
    ({"DURATION": None}, 'write {"$exists": false}'),
    ({"DURATION": [1, 2]}, 'write {"$in": [...]}'),
    ({"DURATION": {"$in": []}}, "$in takes a non-empty list"),
    ({"DURATION": {"$in": 5}}, "$in takes a non-empty list"),
    ({"FILENAME": {"$contains": 5}}, "$contains takes a string, got 5"),
    ({"FILENAME": {"$exists": "yes"}}, "$exists takes true or false, got 'yes'"),
    ({"DURATION": {"$gt": float("nan")}}, "is not a string or a finite number"),
    ({"DURATION": {"$gt": 10**30}}, "is not a string or a finite number"),
    ({"DURATION": {}}, "{} is not a condition"),
    ({"$or": []}, "$or takes a non-empty list of filters"),
    ({"$not": 3}, "3 is not a filter"),
    ([{"DURATION": 1}], "is not a filter"),
    ("DURATION > 10", "is not a filter"),
])
def test_wrong_operand_types_are_refused_naming_the_value(spec: Any, words: str) -> None:
    assert words in refused(spec)


def test_too_deep_and_too_large_filters_are_refused_before_anything_walks_them() -> None:
    deep: dict[str, Any] = {"DURATION": 1}
    for _ in range(MAX_FILTER_DEPTH):
        deep = {"$not": deep}
    assert f"nested deeper than {MAX_FILTER_DEPTH} levels" in refused(deep)
    wide = {"$or": [{"$or": [{"DURATION": n} for n in range(200)]} for _ in range(10)]}
    assert f"more than {MAX_FILTER_VALUES:,} values" in refused(wide)
    assert "items, over the limit" in refused({"DURATION": {"$in": list(range(300))}})
    assert "characters, over the limit" in refused({"FILENAME": "x" * 5000})
    cycle: dict[str, Any] = {}
    cycle["$not"] = cycle  # what a YAML alias can build
    assert "nested deeper" in refused(cycle)


def test_a_parameter_an_event_type_lacks_is_refused_like_a_template_placeholder() -> None:
    types = ("RECORDING_STARTED_EVENT",)
    template = parse_error({"params": "d=%DURATION%"}, types)
    in_filter = parse_error({"filter": {"DURATION": {"$gt": 10}}}, types)
    # the same sentence, the placeholder's %NAME% aside
    assert template.replace("params: placeholder %DURATION%", "filter: DURATION") == in_filter
    assert in_filter == ("destination 'd': filter: DURATION is not a parameter of "
                         "RECORDING_STARTED_EVENT (valid: ACCOUNT, CALLEDAORS, CALLID, "
                         "CALLINGAOR, ERROR, EVENT, EVENTID, REALM, RECORDINGID, RESULT, ROUTE, "
                         "RSS, SESSIONID, STARTTIME, TIMESTAMP, UCID)")
    two = parse_error({"filter": {"FILESIZE": {"$gt": 1}}},
                      ("SEGMENT_STARTED_EVENT", "SEGMENT_ENDED_EVENT", "RECORDING_ENDED_EVENT"))
    assert "FILESIZE is not a parameter of SEGMENT_STARTED_EVENT, RECORDING_ENDED_EVENT" in two
    assert "valid for every event of this destination" in two
    assert "did you mean DURATION?" in parse_error({"filter": {"duration": 1}}, SEG)


def parse_error(fields: dict[str, Any], types: tuple[str, ...]) -> str:
    with pytest.raises(InvalidDestination) as caught:
        parse_destination({"name": "d", "events": list(types), "url": "http://127.0.0.1:9/",
                           **fields})
    assert [e.field for e in caught.value.errors] == [next(iter(fields))]
    return str(caught.value)


def test_events_all_allows_only_the_common_parameters() -> None:
    assert "DURATION is not a parameter of" in parse_error(
        {"filter": {"DURATION": 1}}, EVENT_TYPES)
    dest = parse_destination({"name": "d", "events": "all", "url": "http://127.0.0.1:9/",
                              "filter": {"ROUTE": {"$startsWith": "sales-"}}})
    assert dest.filter is not None and dest.filter.names == {"ROUTE"}


# -- the destination carries it --------------------------------------------------------------
def test_filter_round_trips_through_to_dict_and_the_file_format() -> None:
    spec = {"$or": [{"CALLEDAORS": {"$contains": "sip:100@"}}, {"DURATION": {"$gte": 10.5}}]}
    dest = parse_destination({"name": "d", "events": ["SEGMENT_ENDED_EVENT"],
                              "url": "http://127.0.0.1:9/", "filter": spec})
    assert dest.to_dict()["filter"] == spec
    assert parse_destination(dest.to_dict()) == dest
    [again] = load_file(dump_file([dest]))
    assert again == dest and again.filter is not None and again.filter.source == spec
    plain = parse_destination({"name": "p", "events": "all", "url": "http://127.0.0.1:9/"})
    assert "filter" not in plain.to_dict() and plain.filter is None


def test_routing_applies_the_filter_after_the_index_lookup() -> None:
    def dest(name: str, spec: Any, **extra: Any) -> Any:
        return parse_destination({"name": name, "events": ["SEGMENT_ENDED_EVENT"],
                                  "url": "http://127.0.0.1:9/", "filter": spec, **extra})

    dests = [dest("long", {"DURATION": {"$gt": 10}}), dest("any", None),
             dest("aor", {"CALLEDAORS": {"$contains": "sip:100@"}}, scope="route:r"),
             dest("off", {"DURATION": {"$gt": 10}}, enabled=False)]
    index = RoutingIndex.build(dests)
    assert set(index.filters) == {"long", "aor"}

    def names(**params: Any) -> list[str]:
        event = validate_event({"type": "SEGMENT_ENDED_EVENT", "route": "r", "params": params})
        found = [d.name for d in index.match(event)]
        assert sorted(found) == sorted(d.name for d in dests if matches(d, event))
        return sorted(found)

    assert names(DURATION="30", CALLEDAORS=["sip:100@x"]) == ["any", "aor", "long"]
    assert names(DURATION="5", CALLEDAORS=["sip:7@x"]) == ["any"]
    assert names(DURATION=11) == ["any", "long"]


ROUTED_TYPES = ("SEGMENT_ENDED_EVENT", "RECORDING_ENDED_EVENT")


@given(st.lists(st.tuples(st.sampled_from(["global", "route:r", "account:a", "realm:x"]),
                          st.sampled_from(ROUTED_TYPES),
                          st.one_of(st.none(), nested(2)), st.booleans()),
                min_size=1, max_size=12),
       st.sampled_from(ROUTED_TYPES), st.sampled_from([None, "r"]), st.sampled_from([None, "a"]),
       VALUES)
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_the_index_agrees_with_the_plain_rule_for_filtered_destinations(
        specs: list[tuple[str, str, Any, bool]], event_type: str, route: str | None,
        account: str | None, values: dict[str, Any]) -> None:
    # filters name FILENAME, which only SEGMENT_ENDED_EVENT has among the two
    dests = [parse_destination({"name": f"d{n}", "events": [t], "scope": scope,
                                "filter": spec if t == "SEGMENT_ENDED_EVENT" else None,
                                "enabled": enabled, "url": "http://127.0.0.1:9/"})
             for n, (scope, t, spec, enabled) in enumerate(specs)]
    params = {k: v for k, v in values.items()
              if k != "ROUTE" and k in params_for(event_type)}  # ROUTE is the event's own
    event = validate_event({"type": event_type, "route": route, "account": account,
                            "realm": "x", "params": params})
    found = RoutingIndex.build(dests).match(event)
    assert len(found) == len({d.name for d in found})
    assert sorted(d.name for d in found) == sorted(d.name for d in dests if matches(d, event))


def test_the_file_schema_and_the_api_shape_describe_a_filter() -> None:
    import jsonschema
    import yaml

    from workers.destinations.schema import DestinationOut, file_json_schema

    doc = yaml.safe_load("destinations:\n  - name: long\n    events: [SEGMENT_ENDED_EVENT]\n"
                         "    url: http://127.0.0.1:9/\n    filter: {DURATION: {$gt: 10}}\n")
    jsonschema.Draft202012Validator(file_json_schema()).validate(doc)
    [dest] = load_file(yaml.safe_dump(doc))
    assert DestinationOut.model_validate(dest.to_dict()).filter == {"DURATION": {"$gt": 10}}
    validator = jsonschema.Draft202012Validator(file_json_schema())
    for wrong in ["DURATION > 10", {"DURATION": {"$gtt": 10}}, {"DURATION": {"$gt": True}},
                  {"$xor": []}, {"duration": 1}, {"DURATION": {"$in": []}}]:
        bad = dict(doc["destinations"][0], filter=wrong)
        assert list(validator.iter_errors({"destinations": [bad]})), wrong
    for right in [{"$or": [{"CALLEDAORS": {"$contains": "sip:100@"}}]}, {"ROUTE": "r"}, {}]:
        fine = dict(doc["destinations"][0], filter=right)
        assert list(validator.iter_errors({"destinations": [fine]})) == [], right


@given(JSON)
@settings(max_examples=300)
def test_any_filter_value_in_a_destination_is_saved_or_refused_on_field_filter(spec: Any) -> None:
    try:
        dest = parse_destination({"name": "d", "events": list(SEG), "url": "http://127.0.0.1:9/",
                                  "filter": spec})
    except InvalidDestination as exc:
        assert {e.field for e in exc.errors} == {"filter"}
        assert all(e.message.startswith("destination 'd': filter: ") for e in exc.errors)
        return
    assert parse_destination(dest.to_dict()) == dest
