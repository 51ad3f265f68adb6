"""tracking_spells: each case's spells over event time as rows, replayed from the timeline when the case is
projected, so the reports count "as of a date" in SQL instead of replaying every case's history per report
(issue 21). The rows of an existing store are replayed from its timelines by the service after its
migrations (0011_tracking_derived and spells.ensure_current), not here: a migration must not run the service's
own code, which follows the newest models.

Revision ID: 0010_tracking_spells
Revises: 0009_timeline_codes
Create Date: 2026-11-27 11:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

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


def downgrade() -> None:
    op.drop_index("ix_tracking_spells_la_code", table_name="tracking_spells")
    op.drop_table("tracking_spells")
