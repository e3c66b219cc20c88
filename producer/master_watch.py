"""Follow a ``SENTINEL FAILOVER`` within a second, not when the old primary is demoted.

redis-py's Sentinel client asks the sentinels for the master only when it opens a
connection. After a ``SENTINEL FAILOVER`` the old primary stays writable until the
sentinels demote it on their next INFO round (about 10 s), so a publisher holding
connections to it keeps writing there, and those events are dropped when it becomes
a replica (README: Operations, Redis Sentinel). :class:`MasterWatch` asks the
sentinels every ``interval_s`` from a daemon thread (never in the publishing
thread, so a hung sentinel cannot delay a publish); when they name another master
the pool drops its idle connections, and the next publish connects to the new one.
"""

from __future__ import annotations

import threading
import weakref

import redis
import redis.sentinel

DEFAULT_INTERVAL_S = 1.0


class MasterWatch:
    """A daemon thread re-reading the master's address of a Sentinel-bound client."""

    def __init__(self, client: redis.Redis, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self.changes = 0
        self._stop = threading.Event()
        pool = client.connection_pool
        # a weak reference: the thread ends by itself once the client is gone
        self._pool: weakref.ref[redis.sentinel.SentinelConnectionPool] | None = (
            weakref.ref(pool) if isinstance(pool, redis.sentinel.SentinelConnectionPool)
            else None)
        self._thread: threading.Thread | None = None
        if self._pool is not None:
            self._thread = threading.Thread(target=self._run, name="recnotify-master-watch",
                                            daemon=True)
            self._thread.start()

    @property
    def active(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        assert self._pool is not None
        while not self._stop.wait(self.interval_s):
            pool = self._pool()
            if pool is None:
                return
            before = pool.master_address
            try:
                after = pool.get_master_address()  # type: ignore[no-untyped-call]
            except (redis.RedisError, OSError):
                continue  # sentinels unreachable: keep the current master
            finally:
                del pool
            if before is not None and after != before:
                self.changes += 1

    def stop(self) -> None:
        self._stop.set()
