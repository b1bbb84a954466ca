"""receipts name the connector (SMSC) they came from; subscriptions choose status and/or
receipt callbacks and filter receipts by state

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23 16:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("receipts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "transport",
                sa.Text(),
                nullable=False,
                server_default="",
                comment="the connector (SMSC) the receipt came through",
            )
        )
        batch_op.drop_index("ix_receipts_channel_provider_id_state")
        batch_op.create_index(
            "ix_receipts_channel_transport_provider_id_state",
            ["channel", "transport", "provider_id", "state"],
            unique=True,
        )
    with op.batch_alter_table("callback_subscriptions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "kinds",
                sa.Text(),
                nullable=False,
                server_default="receipt,status",
                comment="comma-separated: status, receipt",
            )
        )
        batch_op.add_column(
            sa.Column(
                "receipt_states",
                sa.Text(),
                nullable=False,
                server_default="",
                comment="comma-separated; empty: all",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("callback_subscriptions", schema=None) as batch_op:
        batch_op.drop_column("receipt_states")
        batch_op.drop_column("kinds")
    with op.batch_alter_table("receipts", schema=None) as batch_op:
        batch_op.drop_index("ix_receipts_channel_transport_provider_id_state")
        batch_op.create_index(
            "ix_receipts_channel_provider_id_state",
            ["channel", "provider_id", "state"],
            unique=True,
        )
        batch_op.drop_column("transport")
