"""callbacks: status-callback subscriptions, their outbox and the attempt log

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-14 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "callback_subscriptions",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("event_types", sa.Text(), nullable=False, comment="comma-separated; empty: all"),
        sa.Column("statuses", sa.Text(), nullable=False, comment="comma-separated; empty: all"),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_subscriptions")),
    )
    op.create_table(
        "callbacks",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False, comment="status or receipt"),
        sa.Column("payload", sa.Text(), nullable=False, comment="the JSON body POSTed"),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.BigInteger(), nullable=False, comment="next attempt, or lease end"),
        sa.Column("last_reply", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False, comment="pending, delivered or failed"),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("delivered_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callbacks")),
    )
    with op.batch_alter_table("callbacks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_callbacks_due",
            ["next_at"],
            unique=False,
            sqlite_where=sa.text("state = 'pending'"),
            postgresql_where=sa.text("state = 'pending'"),
        )
        batch_op.create_index(
            "ix_callbacks_event_id_subscription_id", ["event_id", "subscription_id"], unique=False
        )
        batch_op.create_index(
            "ix_callbacks_subscription_id_id", ["subscription_id", "id"], unique=False
        )
    op.create_table(
        "callback_attempts",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("callback_id", sa.BigInteger(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False, comment="delivered, retry or failed"),
        sa.Column("reply", sa.Text(), nullable=False),
        sa.Column("duration_us", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callback_attempts")),
    )
    with op.batch_alter_table("callback_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_callback_attempts_callback_id", ["callback_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("callback_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_callback_attempts_callback_id")
    op.drop_table("callback_attempts")
    with op.batch_alter_table("callbacks", schema=None) as batch_op:
        batch_op.drop_index("ix_callbacks_subscription_id_id")
        batch_op.drop_index("ix_callbacks_event_id_subscription_id")
        batch_op.drop_index("ix_callbacks_due", sqlite_where=sa.text("state = 'pending'"))
    op.drop_table("callbacks")
    op.drop_table("callback_subscriptions")
