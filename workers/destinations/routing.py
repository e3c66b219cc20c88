"""Which destinations an event notifies (SPEC 4 "An event matches ..."). Pure.

The index is keyed by (scope kind, scope value, event type), so matching costs
four dictionary look-ups however many destinations exist: the event's route,
account and realm, and ``global``. The result filter and the enabled flag are
applied to those few candidates only.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from producer.events import Event


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


D = TypeVar("D", bound=Routable)


@dataclass(frozen=True)
class RoutingIndex(Generic[D]):
    """Destinations indexed by (scope kind, scope value, event type)."""

    by_key: dict[tuple[str, str, str], tuple[D, ...]] = field(default_factory=dict)
    by_name: dict[str, D] = field(default_factory=dict)

    @classmethod
    def build(cls, destinations: Iterable[D]) -> RoutingIndex[D]:
        buckets: dict[tuple[str, str, str], list[D]] = defaultdict(list)
        by_name: dict[str, D] = {}
        for dest in destinations:
            by_name[dest.name] = dest
            if not dest.enabled:
                continue
            kind, value = split_scope(dest.scope)
            for event_type in dest.events:
                buckets[(kind, value, event_type)].append(dest)
        ordered = {k: tuple(sorted(v, key=lambda d: d.name)) for k, v in buckets.items()}
        return cls(by_key=ordered, by_name=by_name)

    def match(self, event: Event) -> list[D]:
        """Every destination ``event`` notifies, each once, in a stable order."""
        keys = [("global", "", event.type)]
        if event.route is not None:
            keys.append(("route", event.route, event.type))
        if event.account is not None:
            keys.append(("account", event.account, event.type))
        if event.realm is not None:
            keys.append(("realm", event.realm, event.type))
        found: list[D] = []
        for key in keys:
            for dest in self.by_key.get(key, ()):
                if event.result in dest.results:
                    found.append(dest)
        return found

    def __len__(self) -> int:
        return len(self.by_name)
