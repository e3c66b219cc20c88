"""Which destinations an event notifies: the index agrees with the plain rule."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from producer.events import EVENT_TYPES, Event
from workers.destinations.routing import Routable, RoutingIndex, split_scope


def matches(destination: Routable, event: Event) -> bool:
    """The rule of SPEC 4, for one destination (the oracle the index must agree with):
    enabled, the event's type and result, its scope, then its filter if it has one."""
    if not destination.enabled or event.type not in destination.events:
        return False
    if event.result not in destination.results:
        return False
    kind, value = split_scope(destination.scope)
    scope_of_event = {"route": event.route, "account": event.account, "realm": event.realm}
    if kind != "global" and scope_of_event.get(kind) != value:
        return False
    filter_ = getattr(destination, "filter", None)
    return filter_ is None or bool(filter_.matches(event))


@dataclass(frozen=True)
class Dest:
    name: str
    events: tuple[str, ...]
    results: tuple[str, ...]
    scope: str
    enabled: bool = True


def event(**kw: object) -> Event:
    base: dict[str, object] = {"type": "RECORDING_STARTED_EVENT", "id": "e",
                               "occurred_at": "2026-01-01T00:00:00.000Z"}
    base.update(kw)
    return Event(**base)  # type: ignore[arg-type]


ALL = ("success", "failure")


def test_route_account_realm_and_global_destinations_all_match_once() -> None:
    dests = [Dest("r", EVENT_TYPES, ALL, "route:r1"), Dest("a", EVENT_TYPES, ALL, "account:a1"),
             Dest("a2", EVENT_TYPES, ALL, "account:a1"), Dest("x", EVENT_TYPES, ALL, "realm:x1"),
             Dest("g", EVENT_TYPES, ALL, "global"), Dest("other", EVENT_TYPES, ALL, "route:r2")]
    index = RoutingIndex.build(dests)
    found = index.match(event(route="r1", account="a1", realm="x1"))
    assert sorted(d.name for d in found) == ["a", "a2", "g", "r", "x"]


def test_disabled_wrong_type_and_wrong_result_do_not_match() -> None:
    dests = [Dest("off", EVENT_TYPES, ALL, "global", enabled=False),
             Dest("ended-only", ("RECORDING_ENDED_EVENT",), ALL, "global"),
             Dest("failures", EVENT_TYPES, ("failure",), "global"),
             Dest("ok", EVENT_TYPES, ("success",), "global")]
    found = RoutingIndex.build(dests).match(event())
    assert [d.name for d in found] == ["ok"]


def test_scope_values_are_exact_and_case_sensitive() -> None:
    index = RoutingIndex.build([Dest("r", EVENT_TYPES, ALL, "route:Support")])
    assert index.match(event(route="support")) == []
    assert index.match(event(route="Support ")) == []
    assert [d.name for d in index.match(event(route="Support"))] == ["r"]


def test_a_scope_value_may_contain_a_colon() -> None:
    index = RoutingIndex.build([Dest("r", EVENT_TYPES, ALL, "route:sip:x@y")])
    assert [d.name for d in index.match(event(route="sip:x@y"))] == ["r"]


names = st.sampled_from(["a", "b", "c"])
scopes = st.one_of(st.just("global"), st.builds(lambda k, v: f"{k}:{v}",
                                                 st.sampled_from(["route", "account", "realm"]),
                                                 names))
dest_strategy = st.builds(
    Dest, name=st.text("xyz0123456789", min_size=1, max_size=6),
    events=st.lists(st.sampled_from(EVENT_TYPES), min_size=1, unique=True).map(tuple),
    results=st.sampled_from([("success",), ("failure",), ALL]), scope=scopes,
    enabled=st.booleans())


@settings(max_examples=300)
@given(dests=st.lists(dest_strategy, max_size=12, unique_by=lambda d: d.name),
       type_=st.sampled_from(EVENT_TYPES), result=st.sampled_from(ALL),
       route=st.none() | names, account=st.none() | names, realm=st.none() | names)
def test_index_matches_exactly_what_the_rule_says(dests: list[Dest], type_: str, result: str,
                                                  route: str | None, account: str | None,
                                                  realm: str | None) -> None:
    ev = event(type=type_, result=result, route=route, account=account, realm=realm)
    expected = sorted(d.name for d in dests if matches(d, ev))
    assert sorted(d.name for d in RoutingIndex.build(dests).match(ev)) == expected
