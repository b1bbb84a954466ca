"""delivery receipts: deliveries.provider_id and the receipts table

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-08 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "provider_id",
                sa.Text(),
                nullable=False,
                server_default="",
                comment="the provider's id for the message (SMPP message_id); receipts name it",
            )
        )
        batch_op.create_index(
            "ix_deliveries_provider_id",
            ["provider_id"],
            unique=False,
            sqlite_where=sa.text("provider_id <> ''"),
            postgresql_where=sa.text("provider_id <> ''"),
        )
    op.create_table(
        "receipts",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("provider_id", sa.Text(), nullable=False),
        sa.Column(
            "event_id", sa.BigInteger(), nullable=True, comment="null: no delivery has this id"
        ),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column(
            "state", sa.Text(), nullable=False, comment="delivered, undeliverable, expired..."
        ),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False, comment="the receipt as received"),
        sa.Column("received_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_receipts")),
    )
    with op.batch_alter_table("receipts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_receipts_channel_provider_id_state",
            ["channel", "provider_id", "state"],
            unique=True,
        )
        batch_op.create_index("ix_receipts_event_id", ["event_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("receipts", schema=None) as batch_op:
        batch_op.drop_index("ix_receipts_event_id")
        batch_op.drop_index("ix_receipts_channel_provider_id_state")
    op.drop_table("receipts")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_provider_id")
        batch_op.drop_column("provider_id")
