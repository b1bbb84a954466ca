"""hourly roll-ups for the reports

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23 16:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    big = sa.BigInteger()
    op.create_table(
        "hourly_stats",
        sa.Column("hour", big, nullable=False, comment="start of the UTC hour of receipt, µs"),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False, comment="a final status"),
        sa.Column("events", big, nullable=False),
        sa.Column("timed", big, nullable=False),
        sa.Column("queue_sum", big, nullable=False),
        sa.Column("queue_min", big, nullable=True),
        sa.Column("queue_max", big, nullable=True),
        sa.Column("sending_sum", big, nullable=False),
        sa.Column("sending_min", big, nullable=True),
        sa.Column("sending_max", big, nullable=True),
        sa.Column("processing_sum", big, nullable=False),
        sa.Column("processing_min", big, nullable=True),
        sa.Column("processing_max", big, nullable=True),
        sa.PrimaryKeyConstraint("hour", "event_type", "status", name=op.f("pk_hourly_stats")),
    )
    op.create_table(
        "rollup_marks",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("until", big, nullable=False, comment="µs since the epoch"),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_rollup_marks")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_events_finished_at",
            ["finished_at"],
            unique=False,
            sqlite_where=sa.text("finished_at IS NOT NULL"),
            postgresql_where=sa.text("finished_at IS NOT NULL"),
        )
    # Nothing is rolled up yet: the first roll-up takes every finished event still stored.
    # Days retention already purged live on in their daily aggregates (counts, no times).
    op.execute("INSERT INTO rollup_marks (name, until) VALUES ('hourly', 0)")
    op.execute(
        """INSERT INTO hourly_stats (hour, event_type, status, events, timed, queue_sum,
             sending_sum, processing_sum)
           SELECT day, event_type, status, events, 0, 0, 0, 0 FROM daily_stats"""
    )


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_finished_at")
    op.drop_table("rollup_marks")
    op.drop_table("hourly_stats")
