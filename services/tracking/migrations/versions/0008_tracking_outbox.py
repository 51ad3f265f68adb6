"""tracking_outbox: a review decision's event (merge, split, cross-LA confirmation) is written in the
decision's transaction and published by the outbox relay, instead of being sent before the commit

Revision ID: 0006_tracking_outbox
Revises: tracking_not_in_school_register
Create Date: 2026-11-27 05:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0006_tracking_outbox"
down_revision: str | None = "tracking_not_in_school_register"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tracking_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("topic", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("published_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("tracking_outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tracking_outbox_event_id"), ["event_id"], unique=True)
        batch_op.create_index(batch_op.f("ix_tracking_outbox_published_at"), ["published_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tracking_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tracking_outbox_published_at"))
        batch_op.drop_index(batch_op.f("ix_tracking_outbox_event_id"))
    op.drop_table("tracking_outbox")
