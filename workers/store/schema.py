"""The configuration database's tables (SQLAlchemy Core), as migration 0001 creates them.

Times are Unix seconds (float). ``destinations.config`` is the destination's
SPEC 4 dict with secrets masked; the secrets themselves are in
``secrets_encrypted`` (Fernet, see :mod:`workers.store.crypto`). ``meta`` holds
``config_version``, bumped in the same transaction as every destination change
so workers can poll one cheap row.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = [
    "CONFIG_VERSION_KEY",
    "attempts",
    "audit_log",
    "dead_letters",
    "destinations",
    "events",
    "meta",
    "metadata",
]

CONFIG_VERSION_KEY = "config_version"

metadata = MetaData()

destinations = Table(
    "destinations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("config", Text, nullable=False),
    Column("secrets_encrypted", Text, nullable=True),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

meta = Table(
    "meta",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)

attempts = Table(
    "attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("notification_id", String(100), nullable=False),
    Column("event_id", String(100), nullable=False),
    Column("destination", String(100), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("at", Float, nullable=False),
    Column("status", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("latency_ms", Float, nullable=False, default=0.0),
    Column("outcome", String(20), nullable=False),
    #: the first 2 KiB of the receiver's answer (workers.http.transport.RESPONSE_EXCERPT_BYTES)
    Column("response", Text, nullable=True),
    Index("ix_attempts_destination_at", "destination", "at"),
    Index("ix_attempts_notification_id", "notification_id"),
    Index("ix_attempts_event_id", "event_id"),
    Index("ix_attempts_at", "at"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("notification_id", String(100), nullable=False, unique=True),
    Column("event_id", String(100), nullable=False),
    Column("destination", String(100), nullable=False),
    Column("event_json", Text, nullable=False),
    Column("attempts_json", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_dead_letters_destination", "destination"),
    Index("ix_dead_letters_created_at", "created_at"),
    Index("ix_dead_letters_event_id", "event_id"),
)

#: Every consumed event, kept ``RECNOTIFY_EVENT_RETENTION_DAYS`` for trace and replay
#: (migration 0003): Redis keeps only the stream entries still to consume. Written by the
#: records flusher from the consumer's buffered copies (workers/state/records.py).
events = Table(
    "events",
    metadata,
    #: 64-bit on PostgreSQL (10^4 events/s fill 32 bits in days); SQLite's rowid is 64-bit
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("event_id", String(200), nullable=False, unique=True),
    #: the stream entry it came from, and its two numbers (the backfill's order and cursor)
    Column("entry_id", String(48), nullable=False),
    Column("entry_ms", BigInteger, nullable=False),
    Column("entry_seq", BigInteger, nullable=False),
    Column("type", String(40), nullable=False),
    Column("ucid", String(200), nullable=True),
    Column("stored_at", Float, nullable=False),
    Column("event_json", Text, nullable=False),
    Index("ix_events_entry", "entry_ms", "entry_seq", "id"),
    Index("ix_events_ucid", "ucid"),
    Index("ix_events_stored_at", "stored_at"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("actor", String(200), nullable=True),
    Column("remote_addr", String(100), nullable=True),
    Column("action", String(100), nullable=False),
    Column("target", String(200), nullable=True),
    Column("detail", Text, nullable=True),
    Index("ix_audit_log_at", "at"),
)
