"""profiles and event type targeting: reconciliation and enrichment

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23 13:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "profiles",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("external_id", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("mobile_phone", sa.Text(), nullable=True),
        sa.Column("push_tokens", sa.Text(), nullable=False, comment="JSON list"),
        sa.Column("language", sa.Text(), nullable=True),
        sa.Column("attributes", sa.Text(), nullable=False, comment="JSON object"),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profiles")),
        sa.UniqueConstraint("external_id", name=op.f("uq_profiles_external_id")),
    )
    with op.batch_alter_table("profiles", schema=None) as batch_op:
        batch_op.create_index("ix_profiles_email", ["email"], unique=False)
        batch_op.create_index("ix_profiles_mobile_phone", ["mobile_phone"], unique=False)
    op.create_table(
        "event_type_targeting",
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column(
            "reconcile_by",
            sa.Text(),
            nullable=False,
            comment="none, externalId, email, mobilePhone",
        ),
        sa.Column("on_missing", sa.Text(), nullable=False, comment="send or targetingFailed"),
        sa.Column("enrichment_url", sa.Text(), nullable=True),
        sa.Column("enrichment_method", sa.Text(), nullable=False, comment="GET or POST"),
        sa.Column("enrichment_timeout", sa.Float(), nullable=False, comment="seconds"),
        sa.Column(
            "enrichment_ttl",
            sa.Float(),
            nullable=False,
            comment="seconds an answer is cached",
        ),
        sa.Column("enrichment_headers", sa.Text(), nullable=False, comment="JSON object"),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("event_type", name=op.f("pk_event_type_targeting")),
    )


def downgrade() -> None:
    op.drop_table("event_type_targeting")
    with op.batch_alter_table("profiles", schema=None) as batch_op:
        batch_op.drop_index("ix_profiles_mobile_phone")
        batch_op.drop_index("ix_profiles_email")
    op.drop_table("profiles")
