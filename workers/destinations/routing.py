"""Which destinations an event notifies (SPEC 4 "An event matches ..."). Pure.

The index is keyed by (scope kind, scope value, event type), so matching costs
four dictionary look-ups however many destinations exist: the event's route,
account and realm, and ``global``. The result filter and the enabled flag are
applied to those few candidates only, and so is a destination's ``filter``
(:mod:`workers.destinations.filters`, compiled at save): its cost is per candidate, not per
destination, and an index with no filters pays one empty-dict check per event.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from producer.events import Event, ParamValue
from workers.destinations.filters import Filter, event_values


class Routable(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def events(self) -> tuple[str, ...]: ...
    @property
    def results(self) -> tuple[str, ...]: ...
    @property
    def enabled(self) -> bool: ...
    @property
    def scope(self) -> str: ...


def split_scope(scope: str) -> tuple[str, str]:
    """``"route:support"`` -> ``("route", "support")``; ``"global"`` -> ``("global", "")``."""
    kind, _, value = scope.partition(":")
    return kind, value


def _filter_of(destination: object) -> Filter | None:
    """A destination's compiled filter (a Routable need not have one)."""
    filter_ = getattr(destination, "filter", None)
    return filter_ if isinstance(filter_, Filter) else None


D = TypeVar("D", bound=Routable)


Key = tuple[str, str, str]


@dataclass(frozen=True)
class RoutingIndex(Generic[D]):
    """Destinations indexed by (scope kind, scope value, event type).

    Each key holds two tuples: the destinations without a filter, and those with one
    beside its compiled filter. An event's candidates without a filter cost what they
    did before filters existed (one look-up per key); a filtered candidate adds its
    filter's test, and the filter's view of the event is built once per event.
    """

    by_key: dict[Key, tuple[tuple[D, ...], tuple[tuple[D, Filter], ...]]] = field(
        default_factory=dict)
    by_name: dict[str, D] = field(default_factory=dict)
    #: the compiled filter of each enabled destination that has one, by name
    filters: dict[str, Filter] = field(default_factory=dict)

    @classmethod
    def build(cls, destinations: Iterable[D]) -> RoutingIndex[D]:
        plain: dict[Key, list[D]] = defaultdict(list)
        filtered: dict[Key, list[tuple[D, Filter]]] = defaultdict(list)
        by_name: dict[str, D] = {}
        filters: dict[str, Filter] = {}
        for dest in destinations:
            by_name[dest.name] = dest
            if not dest.enabled:
                continue
            filter_ = _filter_of(dest)
            if filter_ is not None:
                filters[dest.name] = filter_
            kind, value = split_scope(dest.scope)
            for event_type in dest.events:
                if filter_ is None:
                    plain[(kind, value, event_type)].append(dest)
                else:
                    filtered[(kind, value, event_type)].append((dest, filter_))
        by_key = {
            key: (tuple(sorted(plain.get(key, ()), key=lambda d: d.name)),
                  tuple(sorted(filtered.get(key, ()), key=lambda p: p[0].name)))
            for key in plain.keys() | filtered.keys()
        }
        return cls(by_key=by_key, by_name=by_name, filters=filters)

    def match(self, event: Event) -> list[D]:
        """Every destination ``event`` notifies, each once, in a stable order (per scope:
        those without a filter by name, then those whose filter passes, by name)."""
        keys = [("global", "", event.type)]
        if event.route is not None:
            keys.append(("route", event.route, event.type))
        if event.account is not None:
            keys.append(("account", event.account, event.type))
        if event.realm is not None:
            keys.append(("realm", event.realm, event.type))
        found: list[D] = []
        values: dict[str, ParamValue] | None = None  # built once, for the first filter
        for key in keys:
            bucket = self.by_key.get(key)
            if bucket is None:
                continue
            plain, filtered = bucket
            for dest in plain:
                if event.result in dest.results:
                    found.append(dest)
            if filtered:
                if values is None:
                    values = event_values(event)
                for dest, filter_ in filtered:
                    if event.result in dest.results and filter_.test(values):
                        found.append(dest)
        return found

    def __len__(self) -> int:
        return len(self.by_name)
