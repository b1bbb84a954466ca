"""control: event type specs, template variants, content blocks, test profiles, audit

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 12:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("events") as batch_op:
        batch_op.add_column(
            sa.Column(
                "ctx_issues",
                sa.Text(),
                nullable=True,
                comment="lenient ctx check: what mismatched",
            )
        )
    with op.batch_alter_table("event_types") as batch_op:
        batch_op.add_column(
            sa.Column(
                "spec",
                sa.Text(),
                nullable=True,
                comment="JSON: description, channels, ctx schema",
            )
        )
    with op.batch_alter_table("template_versions") as batch_op:
        batch_op.add_column(
            sa.Column("variants", sa.Text(), nullable=True, comment="JSON: language -> content")
        )
    with op.batch_alter_table("publications") as batch_op:
        batch_op.add_column(
            sa.Column(
                "bundle",
                sa.Text(),
                nullable=True,
                comment="JSON: the whole frozen publication",
            )
        )
    op.create_table(
        "content_blocks",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("author", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_content_blocks")),
        sa.UniqueConstraint("name", "number", name=op.f("uq_content_blocks_name_number")),
    )
    op.create_table(
        "test_profiles",
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("recipient", sa.Text(), nullable=False, comment="JSON"),
        sa.Column("ctx", sa.Text(), nullable=False, comment="JSON object"),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("event_type", "name", name=op.f("pk_test_profiles")),
    )
    op.create_table(
        "publication_audit",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False, comment="publish or unpublish"),
        sa.Column("version_number", sa.Integer(), nullable=True),
        sa.Column("publication_id", sa.BigInteger(), nullable=True),
        sa.Column("content_hash", sa.Text(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_publication_audit")),
    )
    op.create_index(
        "ix_publication_audit_event_type", "publication_audit", ["event_type"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_publication_audit_event_type", table_name="publication_audit")
    op.drop_table("publication_audit")
    op.drop_table("test_profiles")
    op.drop_table("content_blocks")
    with op.batch_alter_table("publications") as batch_op:
        batch_op.drop_column("bundle")
    with op.batch_alter_table("template_versions") as batch_op:
        batch_op.drop_column("variants")
    with op.batch_alter_table("event_types") as batch_op:
        batch_op.drop_column("spec")
    with op.batch_alter_table("events") as batch_op:
        batch_op.drop_column("ctx_issues")
