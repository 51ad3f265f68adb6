"""tracking_spells: each case's spells over event time as rows, replayed from the timeline when the case is
projected, so the reports count "as of a date" in SQL instead of replaying every case's history per report
(issue 21). The rows of an existing store are replayed here once from its timelines.

Revision ID: 0010_tracking_spells
Revises: 0009_timeline_codes
Create Date: 2026-11-27 11:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op
from sqlmodel import Session

revision: str = "0010_tracking_spells"
down_revision: str | None = "0009_timeline_codes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tracking_spells",
        sa.Column("child_id", sa.String(36), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True),
        sa.Column("la_code", sa.String(3), nullable=False),
        sa.Column("starts_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("ends_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(40), nullable=True),
        sa.Column("cme_since", sa.Date(), nullable=True),
        sa.Column("vulnerabilities", sa.String(400), nullable=False),
    )
    op.create_index("ix_tracking_spells_la_code", "tracking_spells", ["la_code"])
    # The replay is the service's own code (history.py), the same the projection runs from now on.
    from services.tracking.spells import refresh_all

    refresh_all(Session(bind=op.get_bind()))


def downgrade() -> None:
    op.drop_index("ix_tracking_spells_la_code", table_name="tracking_spells")
    op.drop_table("tracking_spells")
