"""What the admin service's routes share: settings, store, Redis, transport, enqueue.

Built once at app start from :class:`~workers.config.settings.Settings`; the expensive
parts (the Celery app used to enqueue replays, the HTTP transport of test
notifications) are made on first use.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property

import redis
from fastapi import Request

from producer.redis_url import client_from_url
from workers.admin.auth import Networks
from workers.config.settings import Settings
from workers.http.netsafety import AddressRules, global_rules
from workers.http.transport import Transport
from workers.state.notification import EnqueueMany
from workers.store.database import Store


@dataclass
class AdminState:
    settings: Settings
    token: str | None
    trusted_proxies: Networks = ()
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: The replays this admin process runs (POST /api/replays), by job id.
    backfills: dict[str, threading.Thread] = field(default_factory=dict, repr=False)

    @cached_property
    def store(self) -> Store:
        return Store.of(self.settings)

    @cached_property
    def redis(self) -> redis.Redis:
        return client_from_url(self.settings.redis_url, socket_timeout=10,
                               socket_connect_timeout=5, health_check_interval=25)

    @cached_property
    def transport(self) -> Transport:
        return Transport(pool_maxsize=4)

    @cached_property
    def global_rules(self) -> AddressRules:
        """The outbound rules of ``RECNOTIFY_ALLOW_CIDRS`` / ``RECNOTIFY_DENY_CIDRS``."""
        return global_rules(self.settings.allow_cidrs, self.settings.deny_cidrs)

    @property
    def enqueue(self) -> EnqueueMany:
        """Enqueue ``recnotify.deliver`` tasks (the Celery app is made on first use)."""
        with self._lock:
            return self._enqueue

    @cached_property
    def _enqueue(self) -> EnqueueMany:
        from workers.taskqueue.app import create_app
        from workers.taskqueue.enqueue import make_enqueue

        return make_enqueue(create_app(self.settings))


def get_state(request: Request) -> AdminState:
    state: AdminState = request.app.state.admin
    return state
