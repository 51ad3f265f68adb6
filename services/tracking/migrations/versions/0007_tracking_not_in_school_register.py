"""The register of children not in school (Education Act 1996 s.436B-436G): entries and their history

Revision ID: tracking_not_in_school_register
Revises: 0006_tracking_peers
Create Date: 2026-11-27 05:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "tracking_not_in_school_register"
down_revision: str | None = "0006_tracking_peers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tracking_register_entries",
        sa.Column("child_id", sa.String(36), primary_key=True),
        sa.Column("la_code", sa.String(3), nullable=False),
        sa.Column("on_register", sa.Boolean(), nullable=False),
        sa.Column("category", sa.String(40), nullable=True),
        sa.Column("education", sa.String(24), nullable=True),
        sa.Column("arrangement", sa.String(40), nullable=True),
        sa.Column("ehe_reason", sa.String(40), nullable=True),
        sa.Column("since", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("changed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("left_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("left_reason", sa.String(32), nullable=True),
        sa.Column("left_ref", sa.String(16), nullable=True),
        sa.Column("review_on", sa.Date(), nullable=True),
        sa.Column("handed_to", sa.String(3), nullable=True),
        sa.Column("school_urn", sa.String(6), nullable=True),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    )
    op.create_index("ix_tracking_register_entries_la_code", "tracking_register_entries", ["la_code"])
    op.create_index("ix_tracking_register_entries_on_register", "tracking_register_entries", ["on_register"])
    op.create_index("ix_tracking_register_entries_review_on", "tracking_register_entries", ["review_on"])
    op.create_table(
        "tracking_register_history",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("child_id", sa.String(36), nullable=False),
        sa.Column("la_code", sa.String(3), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("event_type", sa.String(40), nullable=False),
        sa.Column("occurred_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("change", sa.String(16), nullable=False),
        sa.Column("on_register", sa.Boolean(), nullable=False),
        sa.Column("category", sa.String(40), nullable=True),
        sa.Column("education", sa.String(24), nullable=True),
        sa.Column("left_reason", sa.String(32), nullable=True),
        sa.Column("left_ref", sa.String(16), nullable=True),
        sa.Column("source_system", sa.String(64), nullable=True),
        sa.Column("details", sa.Text(), nullable=True),
        sa.Column("recorded_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.UniqueConstraint("child_id", "event_id", name="uq_tracking_register_history_event"),
    )
    op.create_index("ix_tracking_register_history_child_id", "tracking_register_history", ["child_id"])
    op.create_index("ix_tracking_register_history_la_code", "tracking_register_history", ["la_code"])


def downgrade() -> None:
    op.drop_table("tracking_register_history")
    op.drop_table("tracking_register_entries")
