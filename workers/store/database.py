"""The configuration database: destinations (secrets encrypted) and delivery records.

SQLAlchemy Core on any URL; SQLite (the default, a file under ``.recnotify``)
runs in WAL mode with a busy timeout and ``BEGIN IMMEDIATE`` for writes, so
several processes can share it. Every destination change bumps
``config_version`` in the same transaction: workers poll :meth:`Store.version`
and reload :meth:`Store.list_destinations` only when it moved.

Secrets (signing secrets, secret header values, URL userinfo) are stored only
in ``secrets_encrypted``; they never appear in logs or exception messages.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Integer,
    Row,
    Text,
    create_engine,
    delete,
    event,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from workers.config.settings import Settings
from workers.destinations import (
    Destination,
    SecretBundle,
    join_secrets,
    split_secrets,
)
from workers.errors import (
    ConfigError,
    DestinationExists,
    DestinationNotFound,
    FieldError,
    InvalidDestination,
    StoreError,
)
from workers.store.crypto import SET_SECRET_KEY_HINT, SecretBox
from workers.store.events import EventsMixin
from workers.store.migrations import upgrade_connection
from workers.store.records import RecordsMixin, db_errors
from workers.store.schema import CONFIG_VERSION_KEY, destinations, meta

__all__ = ["ImportResult", "Store", "make_engine"]

SQLITE_BUSY_TIMEOUT_MS = 30_000
DEFAULT_ROTATION_OVERLAP_S = 86_400.0


def make_engine(database_url: str) -> Engine:
    """An engine for ``database_url``; SQLite gets WAL, a busy timeout and its directory."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, hide_parameters=True)
    db = url.database
    if db and db != ":memory:" and not db.startswith("file:"):
        Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, pool_pre_ping=True, hide_parameters=True)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy's "begin" event issues BEGIN below
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        writes = conn.get_execution_options().get("recnotify_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")

    return engine


@dataclass(frozen=True, slots=True)
class ImportResult:
    """Names by what an import did to them."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.removed)


class Store(RecordsMixin, EventsMixin):
    """Destinations and delivery records in one SQL database."""

    def __init__(
        self,
        database_url: str,
        secret_key: str | None = None,
        *,
        rotation_overlap_s: float = DEFAULT_ROTATION_OVERLAP_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.database_url = database_url
        self.rotation_overlap_s = rotation_overlap_s
        self._clock = clock
        self._box = SecretBox(secret_key) if secret_key else None
        try:
            self._engine = make_engine(database_url)
        except (SQLAlchemyError, ValueError, OSError) as exc:
            shown = make_url(database_url).render_as_string(hide_password=True)
            raise ConfigError(f"cannot open database {shown}: {exc}") from None
        self._writer = self._engine.execution_options(recnotify_write=True)

    @classmethod
    def of(cls, settings: Settings) -> Store:
        """The store ``settings`` name: their database URL, secrets sealed with their key."""
        return cls(settings.effective_database_url, settings.secret_key)

    def __repr__(self) -> str:
        shown = make_url(self.database_url).render_as_string(hide_password=True)
        return f"Store({shown!r})"

    def close(self) -> None:
        self._engine.dispose()

    def upgrade(self) -> None:
        """Create or upgrade the schema to the newest migration (idempotent)."""
        with db_errors("upgrading the database schema"), self._writer.begin() as conn:
            upgrade_connection(conn)

    def ping(self) -> None:
        """Raise StoreError unless the database answers and has the schema."""
        self.version()

    def version(self) -> int:
        """The configuration version: it changes with every destination change."""
        query = select(meta.c.value).where(meta.c.key == CONFIG_VERSION_KEY)
        what = "reading the configuration version (if the schema is missing: recnotify db upgrade)"
        with db_errors(what), self._engine.connect() as conn:
            value = conn.execute(query).scalar_one_or_none()
        if value is None:
            raise StoreError("database has no config_version: run `recnotify db upgrade`")
        return int(value)

    # -- destinations --------------------------------------------------------------------

    def list_destinations(self) -> list[Destination]:
        """Every destination, by name, with its secrets decrypted (what workers use)."""
        with db_errors("listing destinations"), self._engine.connect() as conn:
            rows = conn.execute(select(destinations).order_by(destinations.c.name)).all()
        return [self._load(row) for row in rows]

    def get(self, name: str) -> Destination:
        """The destination called ``name`` (DestinationNotFound otherwise)."""
        with db_errors("reading a destination"), self._engine.connect() as conn:
            row = self._row(conn, name)
        if row is None:
            raise DestinationNotFound(name)
        return self._load(row)

    def create(self, dest: Destination) -> None:
        """Add a new destination (DestinationExists when the name is taken)."""
        with db_errors("creating a destination"), self._writer.begin() as conn:
            message = f"destination {dest.name!r}: name: already exists (update it instead)"
            exists = DestinationExists(dest.name, [FieldError("name", dest.name, message)])
            if self._row(conn, dest.name) is not None:
                raise exists
            try:
                self._write(conn, dest, None)
            except IntegrityError:  # created concurrently since the check
                raise exists from None
            self._bump(conn)

    def save(self, dest: Destination) -> bool:
        """Create or replace ``dest`` by name; True when it was created."""
        with db_errors("saving a destination"), self._writer.begin() as conn:
            row = self._row(conn, dest.name, lock=True)
            if self._write(conn, dest, row):
                self._bump(conn)
        return row is None

    def remove(self, name: str) -> bool:
        """Delete a destination; False when there was none by that name."""
        with db_errors("removing a destination"), self._writer.begin() as conn:
            gone = conn.execute(delete(destinations).where(destinations.c.name == name)).rowcount
            if gone:
                self._bump(conn)
        return bool(gone)

    def set_enabled(self, name: str, enabled: bool) -> bool:
        """Enable or disable a destination; True when that changed something."""
        with db_errors("enabling/disabling a destination"), self._writer.begin() as conn:
            row = self._row(conn, name, lock=True)
            if row is None:
                raise DestinationNotFound(name)
            if bool(row.enabled) == enabled:
                return False
            conn.execute(
                update(destinations)
                .where(destinations.c.name == name)
                .values(enabled=enabled, updated_at=self._clock())
            )
            self._bump(conn)
        return True

    def import_destinations(
        self, dests: Sequence[Destination], *, replace: bool = False
    ) -> ImportResult:
        """Upsert ``dests`` by name in one transaction; ``replace`` removes the others too."""
        names = [d.name for d in dests]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            errors = [
                FieldError("name", n, f"destination {n!r}: name: given twice") for n in duplicates
            ]
            raise InvalidDestination(None, errors)
        result = ImportResult()
        with db_errors("importing destinations"), self._writer.begin() as conn:
            rows = {r.name: r for r in conn.execute(select(destinations).with_for_update()).all()}
            for dest in dests:
                row = rows.get(dest.name)
                changed = self._write(conn, dest, row)
                target = (
                    result.created
                    if row is None
                    else result.updated
                    if changed
                    else result.unchanged
                )
                target.append(dest.name)
            if replace:
                result.removed.extend(sorted(set(rows) - set(names)))
                if result.removed:
                    conn.execute(
                        delete(destinations).where(destinations.c.name.in_(result.removed))
                    )
            if result.changed:
                self._bump(conn)
        return result

    # -- internals -----------------------------------------------------------------------

    @staticmethod
    def _row(conn: Connection, name: str, *, lock: bool = False) -> Row[Any] | None:
        query = select(destinations).where(destinations.c.name == name)
        return conn.execute(query.with_for_update() if lock else query).first()

    @staticmethod
    def _bump(conn: Connection) -> None:
        conn.execute(
            update(meta)
            .where(meta.c.key == CONFIG_VERSION_KEY)
            .values(value=(meta.c.value.cast(Integer) + 1).cast(Text))
        )

    def _write(self, conn: Connection, dest: Destination, row: Row[Any] | None) -> bool:
        """Insert or update ``dest`` (rotating its secret); False when nothing changed."""
        now = self._clock()
        stored = self._load(row) if row is not None else None
        dest = self._rotate(stored, dest, now)
        if stored is not None and stored == dest:
            return False
        config, bundle = split_secrets(dest)
        config.pop("enabled", None)  # the column is the truth (set_enabled touches only it)
        values = {
            "config": json.dumps(config, sort_keys=True),
            "secrets_encrypted": self._encrypt(dest.name, bundle),
            "enabled": dest.enabled,
            "updated_at": now,
        }
        if row is None:
            conn.execute(destinations.insert().values(name=dest.name, created_at=now, **values))
        else:
            conn.execute(update(destinations).where(destinations.c.id == row.id).values(**values))
        return True

    def _rotate(self, stored: Destination | None, dest: Destination, now: float) -> Destination:
        """``dest`` with ``old_secrets``: a replaced secret stays valid for the overlap."""
        if dest.secret is None:
            return replace(dest, old_secrets=())
        expiry: dict[str, float] = {}
        pairs: Iterable[tuple[str, float]] = (
            *dest.old_secrets,
            *(stored.old_secrets if stored else ()),
        )
        for secret, expires_at in pairs:
            expiry[secret] = max(expiry.get(secret, 0.0), expires_at)
        if stored is not None and stored.secret is not None and stored.secret != dest.secret:
            expiry[stored.secret] = now + self.rotation_overlap_s
        live = [(s, t) for s, t in expiry.items() if t > now and s != dest.secret]
        return replace(dest, old_secrets=tuple(sorted(live, key=lambda p: (-p[1], p[0]))))

    def _encrypt(self, name: str, bundle: SecretBundle) -> str | None:
        if not bundle:
            return None
        if self._box is None:
            raise ConfigError(
                f"destination {name!r} has secrets, which are stored encrypted: "
                f"{SET_SECRET_KEY_HINT}"
            )
        return self._box.encrypt(json.dumps(bundle.to_json_dict()))

    def _load(self, row: Row[Any]) -> Destination:
        config = json.loads(row.config)
        config["enabled"] = bool(row.enabled)
        bundle = None
        if row.secrets_encrypted is not None:
            if self._box is None:
                raise ConfigError(
                    f"destination {row.name!r} has encrypted secrets; to read them "
                    f"{SET_SECRET_KEY_HINT}"
                )
            bundle = SecretBundle.from_json_dict(
                json.loads(self._box.decrypt(row.secrets_encrypted))
            )
        try:
            return join_secrets(config, bundle)
        except InvalidDestination as exc:
            raise StoreError(
                f"stored destination {row.name!r} is not valid any more: {exc}"
            ) from None
