"""Alembic environment: online only, on the connection given in ``config.attributes``."""

from __future__ import annotations

from alembic import context

from workers.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None or context.is_offline_mode():
    raise RuntimeError(
        "run recnotify migrations through `recnotify db upgrade` or "
        "Store(url).upgrade() (recnotify db upgrade), not the alembic command"
    )
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
