"""One Redis URL for the event stream and Celery's broker.

``RECNOTIFY_REDIS_URL`` takes the URL forms kombu accepts for its Redis broker,
so one setting serves the producers, the stream consumer and Celery:

- ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS),
  ``unix://[[user]:password@]/path/to/redis.sock[?db=N]``;
- Redis Sentinel: ``sentinel://[[user]:password@]host:port[;sentinel://host:port...][/db]
  ?master_name=NAME``. The password (if any) is the master's, the sentinels are
  asked without one (as kombu does). The client follows a failover: it asks the
  sentinels for the current master on every new connection.

Redis Cluster is not supported: kombu (Celery's broker transport) has none.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import redis
import redis.sentinel

from producer.errors import InvalidRedisUrl

DEFAULT_SENTINEL_PORT = 26379
PLAIN_SCHEMES = ("redis", "rediss", "unix")


def redact(url: str) -> str:
    """``url`` with every password replaced by ``***`` (for messages and logs)."""
    parts = []
    for part in url.split(";"):
        scheme, sep, rest = part.partition("://")
        userinfo, at, hostpart = rest.rpartition("@")
        if at and ":" in userinfo:
            user = userinfo.partition(":")[0]
            part = f"{scheme}{sep}{user}:***@{hostpart}"
        parts.append(part)
    return ";".join(parts)


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    """A parsed ``sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def kombu_url(self) -> str:
        """The broker URL for kombu: credentials and db on every sentinel, no query.

        kombu takes the password and the db from the URL it is currently using and
        moves to the next one on a connection error, so each carries them.
        """
        auth = ""
        if self.password is not None or self.username is not None:
            auth = f"{quote(self.username or '', safe='')}:{quote(self.password or '', safe='')}@"
        return ";".join(f"sentinel://{auth}{host}:{port}/{self.db}"
                        for host, port in self.sentinels)


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Parse ``sentinel://[[user]:password@]h:p[;sentinel://h:p...][/db]?master_name=NAME``."""
    parts = [p for p in url.split(";") if p.strip()]
    sentinels: list[tuple[str, int]] = []
    username = password = None
    db = 0
    query: dict[str, list[str]] = {}
    for index, part in enumerate(parts):
        split = urlsplit(part.strip())
        if split.scheme != "sentinel":
            raise InvalidRedisUrl(
                f"{redact(part)!r} in Redis URL {redact(url)!r} is not a sentinel:// address; "
                "write sentinel://HOST:PORT;sentinel://HOST:PORT/DB?master_name=NAME")
        try:
            host, port = split.hostname, split.port or DEFAULT_SENTINEL_PORT
        except ValueError as exc:
            raise InvalidRedisUrl(f"bad port in {redact(part)!r} of Redis URL "
                                  f"{redact(url)!r}: {exc}") from None
        if not host:
            raise InvalidRedisUrl(f"no sentinel host in {redact(part)!r} of Redis URL "
                                  f"{redact(url)!r}")
        sentinels.append((host, port))
        if split.password is not None or split.username:
            username = unquote(split.username) if split.username else None
            password = unquote(split.password) if split.password is not None else None
        path = split.path.strip("/")
        if path:
            if not path.isdigit():
                raise InvalidRedisUrl(f"database {path!r} in Redis URL {redact(url)!r} is not "
                                      "a number")
            db = int(path)
        if split.query:
            query.update(parse_qs(split.query))
        if index < len(parts) - 1 and (split.query or path):
            raise InvalidRedisUrl(f"Redis URL {redact(url)!r}: put /DB and ?master_name= "
                                  "after the last sentinel address only")
    names = query.get("master_name") or [""]
    if not names[0]:
        raise InvalidRedisUrl(f"Redis URL {redact(url)!r} needs the master's name: append "
                              "?master_name=NAME (the name the sentinels monitor)")
    return SentinelUrl(tuple(sentinels), names[0], db, username, password)


def _scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in (*PLAIN_SCHEMES, "sentinel"):
        raise InvalidRedisUrl(
            f"Redis URL {redact(url)!r} has an unsupported scheme; use redis://, rediss://, "
            "unix:// or sentinel:// (Redis Cluster is not supported)")
    return scheme


def client_from_url(url: str, **kwargs: Any) -> redis.Redis:
    """A redis-py client for any URL form above; ``kwargs`` go to its connections.

    For ``sentinel://`` the client is bound to the master (it re-asks the sentinels
    after a failover); ``socket_*`` options also apply to the sentinel connections.
    """
    if _scheme(url) != "sentinel":
        try:
            return redis.Redis.from_url(url, **kwargs)
        except ValueError as exc:
            raise InvalidRedisUrl(f"Redis URL {redact(url)!r}: {exc}") from None
    parsed = parse_sentinel_url(url)
    sentinel_kwargs = {k: v for k, v in kwargs.items() if k.startswith("socket_")}
    manager = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
        list(parsed.sentinels), sentinel_kwargs=sentinel_kwargs)
    client: redis.Redis = manager.master_for(  # type: ignore[no-untyped-call]
        parsed.master_name, db=parsed.db, username=parsed.username, password=parsed.password,
        **kwargs)
    return client


def kombu_broker(url: str) -> tuple[str, dict[str, Any]]:
    """Celery's ``broker_url`` and extra ``broker_transport_options`` for ``url``."""
    if _scheme(url) != "sentinel":
        return url, {}
    parsed = parse_sentinel_url(url)
    return parsed.kombu_url(), {"master_name": parsed.master_name}
