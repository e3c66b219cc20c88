"""Events move to the database (trace and replay read them here; Redis keeps only the
stream entries still to consume), and dead letters are found by event.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("event_id", sa.String(200), nullable=False, unique=True),
        sa.Column("entry_id", sa.String(48), nullable=False),
        sa.Column("entry_ms", sa.BigInteger, nullable=False),
        sa.Column("entry_seq", sa.BigInteger, nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("ucid", sa.String(200), nullable=True),
        sa.Column("stored_at", sa.Float, nullable=False),
        sa.Column("event_json", sa.Text, nullable=False),
    )
    op.create_index("ix_events_entry", "events", ["entry_ms", "entry_seq", "id"])
    op.create_index("ix_events_ucid", "events", ["ucid"])
    op.create_index("ix_events_stored_at", "events", ["stored_at"])
    op.create_index("ix_dead_letters_event_id", "dead_letters", ["event_id"])


def downgrade() -> None:
    op.drop_index("ix_dead_letters_event_id", "dead_letters")
    op.drop_table("events")
