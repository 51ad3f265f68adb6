"""referral tables

Revision ID: 0001_referral
Revises:
Create Date: 2026-11-23 13:12:26.853760
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_referral"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "referral_api_clients",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("la_code", sa.String(length=3), nullable=False),
        sa.Column("school_urn", sa.String(length=6), nullable=True),
        sa.Column("school_estab", sa.String(length=4), nullable=True),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("rate_per_s", sa.Float(), nullable=False),
        sa.Column("burst", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("referral_api_clients", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_referral_api_clients_key_id"), ["key_id"], unique=True)
        batch_op.create_index(batch_op.f("ix_referral_api_clients_la_code"), ["la_code"], unique=False)

    op.create_table(
        "referral_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("referral_outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_referral_outbox_event_id"), ["event_id"], unique=True)
        batch_op.create_index(batch_op.f("ix_referral_outbox_published_at"), ["published_at"], unique=False)

    op.create_table(
        "referral_submissions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=36), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("response_code", sa.Integer(), nullable=False),
        sa.Column("response_body", sa.JSON(), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("child_id", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id", name="uq_referral_submissions_event_id"),
    )
    with op.batch_alter_table("referral_submissions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_referral_submissions_client_id"), ["client_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("referral_submissions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_referral_submissions_client_id"))

    op.drop_table("referral_submissions")
    with op.batch_alter_table("referral_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_referral_outbox_published_at"))
        batch_op.drop_index(batch_op.f("ix_referral_outbox_event_id"))

    op.drop_table("referral_outbox")
    with op.batch_alter_table("referral_api_clients", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_referral_api_clients_la_code"))
        batch_op.drop_index(batch_op.f("ix_referral_api_clients_key_id"))

    op.drop_table("referral_api_clients")
