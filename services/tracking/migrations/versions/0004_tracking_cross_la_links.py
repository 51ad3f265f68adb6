"""tracking_cross_la_links: a child sought by one LA and named by a fact in another (issue 18)

Revision ID: 0004_tracking
Revises: 0003_tracking
Create Date: 2026-11-27 02:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0004_tracking"
down_revision: str | None = "0003_tracking"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _s(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.create_table(
        "tracking_cross_la_links",
        sa.Column("link_id", _s(36), nullable=False),
        sa.Column("sought_la_code", _s(3), nullable=False),
        sa.Column("sought_child_id", _s(36), nullable=False),
        sa.Column("sought_state", _s(32), nullable=False),
        sa.Column("missing_since", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("found_la_code", _s(3), nullable=False),
        sa.Column("found_child_id", _s(36), nullable=False),
        sa.Column("event_id", _s(36), nullable=False),
        sa.Column("fact_type", _s(40), nullable=False),
        sa.Column("fact_occurred_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("match", _s(16), nullable=False),
        sa.Column("identifier_kind", _s(16), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("fields_agreed", _s(100), nullable=False),
        sa.Column("sought_review_id", _s(36), nullable=False),
        sa.Column("found_review_id", _s(36), nullable=False),
        sa.Column("status", _s(16), nullable=False),
        sa.Column("decided_by", _s(128), nullable=True),
        sa.Column("decided_la_code", _s(3), nullable=True),
        sa.Column("decided_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("link_id"),
        sa.UniqueConstraint("sought_child_id", "found_child_id", name="uq_tracking_cross_la_pair"),
    )
    for column in (
        "sought_la_code",
        "sought_child_id",
        "found_la_code",
        "found_child_id",
        "sought_review_id",
        "found_review_id",
        "status",
    ):
        op.create_index(f"ix_tracking_cross_la_links_{column}", "tracking_cross_la_links", [column])


def downgrade() -> None:
    op.drop_table("tracking_cross_la_links")
