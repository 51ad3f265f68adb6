"""tracking_resolutions.matched_child_id: which child's identifier an event matched, before following merges

Revision ID: 0002_tracking
Revises: 0001_tracking
Create Date: 2026-11-23 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0002_tracking"
down_revision: str | None = "0001_tracking"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "tracking_resolutions",
        sa.Column("matched_child_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=True),
    )
    op.create_index(
        op.f("ix_tracking_resolutions_matched_child_id"),
        "tracking_resolutions",
        ["matched_child_id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_tracking_resolutions_matched_child_id"), table_name="tracking_resolutions")
    op.drop_column("tracking_resolutions", "matched_child_id")
