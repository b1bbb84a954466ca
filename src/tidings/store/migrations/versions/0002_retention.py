"""retention: daily aggregates, events by age

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "daily_stats",
        sa.Column(
            "day", sa.BigInteger(), nullable=False, comment="UTC midnight, µs since the epoch"
        ),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, comment="a final status"),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("attempts", sa.BigInteger(), nullable=False, comment="sum of delivery attempts"),
        sa.Column(
            "send_us",
            sa.BigInteger(),
            nullable=False,
            comment="processed: sum of due-to-sent times, µs",
        ),
        sa.PrimaryKeyConstraint("day", "event_type", "status", name=op.f("pk_daily_stats")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index("ix_events_received_at", ["received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_received_at")
    op.drop_table("daily_stats")
