"""What the admin service's routes share: settings, store, Redis, transport, enqueue.

Built once at app start from :class:`~workers.settings.Settings`; the expensive
parts (the Celery app used to enqueue replays, the HTTP transport of test
notifications) are made on first use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import redis
from fastapi import Request

from producer.redis_url import client_from_url
from workers.admin.auth import Networks
from workers.netsafety import AddressRules, parse_cidrs
from workers.settings import Settings
from workers.store import Store
from workers.transport import Transport

Enqueue = Callable[[Sequence[tuple[str, str]]], None]


@dataclass
class AdminState:
    settings: Settings
    token: str | None
    trusted_proxies: Networks = ()
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @cached_property
    def store(self) -> Store:
        return Store(self.settings.effective_database_url, self.settings.secret_key)

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
        allow = self.settings.allow_cidrs
        return AddressRules(
            allow=(parse_cidrs(allow, where="RECNOTIFY_ALLOW_CIDRS"),) if allow else (),
            deny=parse_cidrs(self.settings.deny_cidrs, where="RECNOTIFY_DENY_CIDRS"),
        )

    @property
    def enqueue(self) -> Enqueue:
        """Enqueue ``recnotify.deliver`` tasks (the Celery app is made on first use)."""
        with self._lock:
            return self._enqueue

    @cached_property
    def _enqueue(self) -> Enqueue:
        from workers.app import create_app
        from workers.service import make_enqueue

        return make_enqueue(create_app(self.settings))


def get_state(request: Request) -> AdminState:
    state: AdminState = request.app.state.admin
    return state
