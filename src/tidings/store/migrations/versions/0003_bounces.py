"""bounces: delivery status notifications matched to events

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 10:00:00.000000
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
        "bounces",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column(
            "address", sa.Text(), nullable=False, comment="the address the event was sent to"
        ),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False, comment="hard, soft or delayed"),
        sa.Column("status", sa.Text(), nullable=False, comment="enhanced status code, 5.1.1"),
        sa.Column("diagnostic", sa.Text(), nullable=False),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bounces")),
    )
    with op.batch_alter_table("bounces", schema=None) as batch_op:
        batch_op.create_index(
            "ix_bounces_event_id_address_kind", ["event_id", "address", "kind"], unique=True
        )
        batch_op.create_index(
            "ix_bounces_address_received_at", ["address", "received_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("bounces", schema=None) as batch_op:
        batch_op.drop_index("ix_bounces_address_received_at")
        batch_op.drop_index("ix_bounces_event_id_address_kind")
    op.drop_table("bounces")
