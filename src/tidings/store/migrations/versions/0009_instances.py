"""execution instances a control instance publishes to, and each delivery's result

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23 15:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("base_url", sa.Text(), nullable=False),
        sa.Column("credential", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("contacted_at", sa.BigInteger(), nullable=True, comment="last answer received"),
        sa.Column("last_outcome", sa.Text(), nullable=False, comment="'', ok or failed"),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_instances")),
    )
    op.create_table(
        "instance_deliveries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("instance", sa.Text(), nullable=False),
        sa.Column(
            "audit_id", sa.BigInteger(), nullable=True, comment="the audit line it carried out"
        ),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False, comment="publish or unpublish"),
        sa.Column("content_hash", sa.Text(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False, comment="ok or failed"),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_instance_deliveries")),
    )
    with op.batch_alter_table("instance_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            "ix_instance_deliveries_instance_id", ["instance", "id"], unique=False
        )
        batch_op.create_index("ix_instance_deliveries_audit_id", ["audit_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("instance_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_instance_deliveries_audit_id")
        batch_op.drop_index("ix_instance_deliveries_instance_id")
    op.drop_table("instance_deliveries")
    op.drop_table("instances")
