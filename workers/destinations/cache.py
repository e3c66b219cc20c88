"""The workers' in-memory copy of the destinations, refreshed by the store's version.

Every process polls ``store.version()`` (one cheap query) every second and
reloads only when it changed, so a change applies within about a second without
a restart. While the database is unreachable, deliveries continue from the last
good copy; the outage is logged once.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from workers.destinations.model import Destination
from workers.destinations.routing import RoutingIndex

log = logging.getLogger(__name__)


class DestinationSource(Protocol):
    def version(self) -> int: ...
    def list_destinations(self) -> list[Destination]: ...


class ConfigCache:
    def __init__(self, source: DestinationSource) -> None:
        self.source = source
        self.index: RoutingIndex[Destination] = RoutingIndex.build([])
        self.version: int | None = None
        self.loaded = threading.Event()
        self._failing_since: float | None = None

    def refresh(self) -> bool:
        """Reload when the stored version changed; True when a new copy was loaded."""
        try:
            version = self.source.version()
            if version == self.version:
                self._recovered()
                return False
            destinations = self.source.list_destinations()
        except Exception as exc:
            if self._failing_since is None:
                self._failing_since = time.time()
                log.error(
                    "cannot read destinations (%s: %s); using the copy loaded at version %s",
                    type(exc).__name__,
                    exc,
                    self.version,
                )
            return False
        self._recovered()
        self.index = RoutingIndex.build(destinations)
        self.version = version
        self.loaded.set()
        log.info("destinations loaded: %d (config version %d)", len(destinations), version)
        return True

    def _recovered(self) -> None:
        if self._failing_since is not None:
            log.warning(
                "destinations readable again after %.0f s", time.time() - self._failing_since
            )
            self._failing_since = None

    def get(self, name: str) -> Destination | None:
        return self.index.by_name.get(name)
