"""tracking_derived: the replay version each derived table (tracking_spells) was built with. The service fills
and refreshes the derived rows after its migrations (services/tracking/spells.py ``ensure_current``), so
0010 no longer runs the service's own code; a store migrated by 0010 is refreshed once more (idempotent).

Revision ID: 0011_tracking_derived
Revises: 0010_tracking_spells
Create Date: 2026-11-27 14:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0011_tracking_derived"
down_revision: str | None = "0010_tracking_spells"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tracking_derived",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("refreshed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tracking_derived")
