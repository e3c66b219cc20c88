"""Typed settings, read from the environment once at the edge (CLI / app start).

The Redis key names live in :mod:`workers.config.keys`; ``Settings.keys`` holds them.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from producer.cells import CellRouter
from producer.constants import (
    DEFAULT_DURABLE_TIMEOUT_MS,
    DEFAULT_KEY_PREFIX,
    DEFAULT_PUBLISH_TIMEOUT_S,
    DEFAULT_REDIS_URL,
)
from producer.discovery import RunInfo, cwd_data_dir, find_running
from producer.errors import InvalidPublishOption
from workers.config.env import (
    DEFAULT_CLAIM_IDLE_S,
    DEFAULT_CONCURRENCY,
    DEFAULT_DEDUPE_WINDOW_S,
    DEFAULT_EVENT_RETENTION_DAYS,
    DEFAULT_MAX_COUNTDOWN_S,
    DEFAULT_RECORD_RETENTION_DAYS,
    DEFAULT_STREAM_RETENTION_S,
    DEFAULT_WATCHDOG_S,
    read_env,
)
from workers.config.keys import Keys
from workers.config.secret_key import read_key_file
from workers.errors import ConfigError

#: The data dir when none is given (SPEC 7): ./.recnotify, unless a live `recnotify run`
#: found through its per-user pointer names another (producer/discovery.py). For help texts.
DEFAULT_DATA_DIR_TEXT = ("./.recnotify, or the data dir of the running `recnotify run` "
                         "(its per-user pointer)")


def _env(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name)
    return value if value not in (None, "") else default


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a recnotify process needs to know, with units in the names."""

    redis_url: str = DEFAULT_REDIS_URL
    redis_url_explicit: bool = False
    #: ``RECNOTIFY_CELLS`` / ``--cells``: comma-separated cell URLs (producer/cells.py);
    #: publish, trace and dead-letter replay use them; a worker serves ``redis_url`` only
    cells: str = ""
    #: ``RECNOTIFY_CELL_TABLE`` / ``--cell-table``: ``account=cell,...`` pinned tenants
    cell_table: str = ""
    key_prefix: str = DEFAULT_KEY_PREFIX
    database_url: str | None = None
    data_dir: Path = field(default_factory=cwd_data_dir)
    #: the pid of the ``recnotify run`` whose run file gave the Redis URL (None: configured)
    discovered_from_pid: int | None = None
    secret_key: str | None = field(default=None, repr=False)
    stream_retention_s: float = DEFAULT_STREAM_RETENTION_S
    #: a finished notification's state and an event's copy stay in Redis
    #: this long (then only the database has them)
    dedupe_window_s: float = DEFAULT_DEDUPE_WINDOW_S
    #: the database keeps events for trace and replay this long
    event_retention_days: float = DEFAULT_EVENT_RETENTION_DAYS
    record_retention_days: float = DEFAULT_RECORD_RETENTION_DAYS
    publish_timeout_s: float = DEFAULT_PUBLISH_TIMEOUT_S
    #: ``recnotify publish``: wait for this many replicas (WAIT), 0 = do not
    publish_durable_replicas: int = 0
    publish_durable_timeout_ms: int = DEFAULT_DURABLE_TIMEOUT_MS
    #: a queued task unseen this long is taken for lost and enqueued again
    watchdog_s: float = DEFAULT_WATCHDOG_S
    max_countdown_s: float = DEFAULT_MAX_COUNTDOWN_S
    claim_idle_s: float = DEFAULT_CLAIM_IDLE_S
    concurrency: int = DEFAULT_CONCURRENCY
    allow_cidrs: str = ""
    deny_cidrs: str = ""
    log_format: str = "text"
    log_level: str = "INFO"
    #: OpenTelemetry tracing (``RECNOTIFY_OTEL``): off, otlp, console or jsonl:PATH
    otel: str = "off"
    node_name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, discover: bool = True,
                 **overrides: Any) -> Settings:
        """Settings from ``env`` (default: the process environment), then ``overrides``.

        The data dir is ``data_dir`` / ``RECNOTIFY_DATA_DIR``, else ``./.recnotify``. With
        ``discover``, a live ``recnotify run`` (:func:`producer.discovery.find_running`:
        the given data dir's run file; with none given, ``./.recnotify``'s, else the
        per-user pointer) gives the data dir when none is given, and the Redis URL, key
        prefix and database URL that are not configured explicitly.
        """
        env = os.environ if env is None else env
        overrides = {k: v for k, v in overrides.items() if v is not None}
        given_dir = overrides.get("data_dir") or _env(env, "RECNOTIFY_DATA_DIR", "")
        explicit_dir = Path(given_dir).expanduser() if given_dir else None
        running = find_running(explicit_dir) if discover else None
        if explicit_dir is not None:
            data_dir = explicit_dir
        elif running is not None:
            data_dir = Path(running.data_dir)
        else:
            try:
                data_dir = cwd_data_dir()
            except OSError:
                raise ConfigError(
                    "the current directory no longer exists, so the default data dir "
                    "./.recnotify cannot be used: cd to an existing directory, or give "
                    "--data-dir / RECNOTIFY_DATA_DIR") from None
        overrides["data_dir"] = data_dir
        typed = read_env(env)
        settings = cls(
            redis_url=typed.REDIS_URL or DEFAULT_REDIS_URL,
            redis_url_explicit=bool(typed.REDIS_URL),
            cells=typed.CELLS,
            cell_table=typed.CELL_TABLE,
            key_prefix=env.get("RECNOTIFY_KEY_PREFIX", DEFAULT_KEY_PREFIX),
            database_url=typed.DATABASE_URL or None,
            data_dir=data_dir,
            secret_key=typed.SECRET_KEY or read_key_file(data_dir),
            stream_retention_s=typed.STREAM_RETENTION_S,
            dedupe_window_s=typed.DEDUPE_WINDOW_S,
            event_retention_days=typed.EVENT_RETENTION_DAYS,
            record_retention_days=typed.RECORD_RETENTION_DAYS,
            publish_timeout_s=typed.PUBLISH_TIMEOUT_S,
            publish_durable_replicas=typed.PUBLISH_DURABLE_REPLICAS,
            publish_durable_timeout_ms=typed.PUBLISH_DURABLE_TIMEOUT_MS,
            concurrency=typed.CONCURRENCY,
            watchdog_s=typed.WATCHDOG_S,
            max_countdown_s=typed.MAX_COUNTDOWN_S,
            claim_idle_s=typed.CLAIM_IDLE_S,
            allow_cidrs=typed.ALLOW_CIDRS,
            deny_cidrs=typed.DENY_CIDRS,
            otel=typed.OTEL,
        )
        if "redis_url" in overrides:
            overrides.setdefault("redis_url_explicit", True)
        settings = replace(settings, **overrides)
        if running is not None:
            settings = settings._with_running_service(
                running, prefix_given="RECNOTIFY_KEY_PREFIX" in env or "key_prefix" in overrides)
        settings.cell_router  # noqa: B018 - a bad cell list or table fails here, in one line
        return settings

    @property
    def cell_router(self) -> CellRouter | None:
        """The cells (``RECNOTIFY_CELLS``), or None: one Redis, ``redis_url``."""
        if not self.cells.strip():
            if self.cell_table.strip():
                raise ConfigError("RECNOTIFY_CELL_TABLE is set but RECNOTIFY_CELLS is not: "
                                  "give the cells' URLs too (or unset the table)")
            return None
        try:
            return CellRouter.parse(self.cells, self.cell_table)
        except InvalidPublishOption as exc:
            raise ConfigError(str(exc)) from None

    def for_cell(self, index: int) -> Settings:
        """These settings for cell ``index``: its Redis URL, no cells (as its workers run)."""
        router = self.cell_router
        if router is None:
            return self
        return replace(self, redis_url=router.cells[index].url, redis_url_explicit=True,
                       cells="", cell_table="")

    def _with_running_service(self, running: RunInfo, *, prefix_given: bool) -> Settings:
        """What ``running`` serves, for each of Redis URL, key prefix, database URL not given."""
        return replace(
            self,
            redis_url=self.redis_url if self.redis_url_explicit else running.redis_url,
            key_prefix=self.key_prefix if prefix_given else running.key_prefix,
            database_url=self.database_url or running.database_url,
            discovered_from_pid=running.pid,
        )

    def require_database(self) -> None:
        """A ConfigError saying where it looked unless the database exists with its schema.

        A command that reads the configuration never creates an empty database: a
        SQLite file is opened only if it exists, and a database without the recnotify
        tables is refused. An unreachable server is left to the store's own error.
        """
        from sqlalchemy import create_engine, inspect
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import SQLAlchemyError

        url = make_url(self.effective_database_url)
        shown = url.render_as_string(hide_password=True)
        fix = (f"start the service with `recnotify run` (it creates it), or create it with "
               f"`recnotify db upgrade`; or point --data-dir / RECNOTIFY_DATA_DIR (now "
               f"{self.data_dir}) or RECNOTIFY_DATABASE_URL at the service's database")
        if url.get_backend_name() == "sqlite":
            db = url.database or ""
            if db in ("", ":memory:") or db.startswith("file:"):
                return
            if not Path(db).expanduser().is_file():
                raise ConfigError(f"no recnotify database at {Path(db).expanduser()}: {fix}")
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                found = inspect(conn)
                has_schema = found.has_table("destinations")
                current = found.has_table("events")
        except SQLAlchemyError:
            return
        finally:
            engine.dispose()
        if not has_schema:
            raise ConfigError(f"the database {shown} has no recnotify tables: {fix}")
        if not current:
            raise ConfigError(f"the database {shown} has an older recnotify schema (no events "
                              "table): upgrade it with `recnotify db upgrade`")

    @property
    def keys(self) -> Keys:
        return Keys(self.key_prefix)

    @property
    def effective_database_url(self) -> str:
        """``RECNOTIFY_DATABASE_URL``, else the SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'recnotify.db').resolve()}"

    def to_env(self) -> dict[str, str]:
        """The environment that gives a child process these settings."""
        env = {
            "RECNOTIFY_REDIS_URL": self.redis_url,
            "RECNOTIFY_KEY_PREFIX": self.key_prefix,
            "RECNOTIFY_DATABASE_URL": self.effective_database_url,
            "RECNOTIFY_DATA_DIR": str(self.data_dir),
            "RECNOTIFY_STREAM_RETENTION_S": str(self.stream_retention_s),
            "RECNOTIFY_DEDUPE_WINDOW_S": str(self.dedupe_window_s),
            "RECNOTIFY_EVENT_RETENTION_DAYS": str(self.event_retention_days),
            "RECNOTIFY_RECORD_RETENTION_DAYS": str(self.record_retention_days),
            "RECNOTIFY_CONCURRENCY": str(self.concurrency),
            "RECNOTIFY_WATCHDOG_S": str(self.watchdog_s),
            "RECNOTIFY_MAX_COUNTDOWN_S": str(self.max_countdown_s),
            "RECNOTIFY_CLAIM_IDLE_S": str(self.claim_idle_s),
            "RECNOTIFY_ALLOW_CIDRS": self.allow_cidrs,
            "RECNOTIFY_DENY_CIDRS": self.deny_cidrs,
            "RECNOTIFY_LOG_FORMAT": self.log_format,
            "RECNOTIFY_LOG_LEVEL": self.log_level,
            "RECNOTIFY_OTEL": self.otel,
        }
        if self.secret_key:
            env["RECNOTIFY_SECRET_KEY"] = self.secret_key
        return env
