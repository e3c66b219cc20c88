"""Per-process objects (Redis client, store, configuration cache, HTTP transport).

Built lazily on first use in the process that uses them, so nothing (sockets,
connection pools) is ever shared across a ``fork``.
"""

from __future__ import annotations

import atexit
import os
import threading
from dataclasses import dataclass
from functools import cached_property

import redis

from producer.redis_url import client_from_url
from workers.config.settings import Settings
from workers.delivery.deliverer import Deliverer
from workers.destinations.cache import ConfigCache
from workers.http.netsafety import AddressRules, global_rules
from workers.http.transport import Transport
from workers.state.counters import Tally
from workers.state.ordering import Ordering
from workers.store.database import Store


@dataclass
class Runtime:
    settings: Settings

    @cached_property
    def redis(self) -> redis.Redis:
        return client_from_url(
            self.settings.redis_url,
            socket_timeout=10,
            socket_connect_timeout=5,
            health_check_interval=25,
            max_connections=self.settings.concurrency + 16,
            retry_on_timeout=True,
        )

    @cached_property
    def store(self) -> Store:
        return Store.of(self.settings)

    @cached_property
    def config(self) -> ConfigCache:
        cache = ConfigCache(self.store)
        cache.refresh()
        return cache

    @cached_property
    def global_rules(self) -> AddressRules:
        return global_rules(self.settings.allow_cidrs, self.settings.deny_cidrs)

    @cached_property
    def transport(self) -> Transport:
        return Transport(pool_maxsize=self.settings.concurrency)

    @cached_property
    def ordering(self) -> Ordering:
        keys = self.settings.keys
        return Ordering(self.redis, self.settings.key_prefix, keys.events, keys.group)

    @cached_property
    def tally(self) -> Tally:
        """The per-attempt counters of this process (flushed by the worker's housekeeping
        loop every half second, and at exit: workers.state.counters.Tally)."""
        made = Tally(self.redis, self.settings.keys.metric)
        atexit.register(made.flush_quietly)
        return made

    @cached_property
    def deliverer(self) -> Deliverer:
        return Deliverer(
            self.settings, self.redis, self.config, self.transport, self.global_rules, self.store,
            ordering=self.ordering, tally=self.tally,
        )


_runtimes: dict[tuple[int, int], Runtime] = {}
_lock = threading.Lock()


def get_runtime(settings: Settings) -> Runtime:
    """The runtime of this process for ``settings`` (a new one after fork)."""
    key = (os.getpid(), id(settings))
    runtime = _runtimes.get(key)
    if runtime is None:
        with _lock:
            runtime = _runtimes.setdefault(key, Runtime(settings))
    return runtime
