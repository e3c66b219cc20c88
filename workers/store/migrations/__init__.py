"""Alembic migrations of the configuration database (``recnotify db upgrade``).

No ``alembic.ini``: :func:`alembic_config` builds the configuration in code and
hands Alembic an open connection, so SQLite pragmas and credentials stay with
the engine that :mod:`workers.store.database` made.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

__all__ = ["MIGRATIONS_DIR", "alembic_config", "upgrade_connection"]

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(connection: Connection) -> Config:
    """An Alembic configuration that runs this package's scripts on ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def upgrade_connection(connection: Connection, revision: str = "head") -> None:
    """Upgrade the schema on ``connection`` (inside its open transaction) to ``revision``."""
    if connection.dialect.name == "postgresql":  # one migrator at a time across hosts
        connection.exec_driver_sql("SELECT pg_advisory_xact_lock(727270001)")
    command.upgrade(alembic_config(connection), revision)
