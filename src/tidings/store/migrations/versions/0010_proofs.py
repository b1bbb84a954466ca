"""proofs: a version's frozen bundle sent to an event type's seed addresses

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23 15:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_REPORTED = ["received_at", "type", "status", "claimed_at", "sent_at", "scheduled_at"]


def upgrade() -> None:
    op.create_table(
        "proofs",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("version_id", sa.BigInteger(), nullable=False),
        sa.Column("version_number", sa.Integer(), nullable=False),
        sa.Column("profile", sa.Text(), nullable=False, comment="test profile; empty: examples"),
        sa.Column("bundle", sa.Text(), nullable=False, comment="JSON: the marked frozen bundle"),
        sa.Column("requested_by", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_proofs")),
    )
    with op.batch_alter_table("proofs", schema=None) as batch_op:
        batch_op.create_index("ix_proofs_event_type", ["event_type"], unique=False)
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("proof_id", sa.BigInteger(), nullable=True, comment="set: a proof's event")
        )
        batch_op.create_index(
            "ix_events_proof_id",
            ["proof_id"],
            unique=False,
            sqlite_where=sa.text("proof_id IS NOT NULL"),
            postgresql_where=sa.text("proof_id IS NOT NULL"),
        )
        batch_op.drop_index("ix_events_received_at")
        batch_op.create_index("ix_events_received_at", [*_REPORTED, "proof_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_received_at")
        batch_op.create_index("ix_events_received_at", _REPORTED, unique=False)
        batch_op.drop_index("ix_events_proof_id")
        batch_op.drop_column("proof_id")
    with op.batch_alter_table("proofs", schema=None) as batch_op:
        batch_op.drop_index("ix_proofs_event_type")
    op.drop_table("proofs")
