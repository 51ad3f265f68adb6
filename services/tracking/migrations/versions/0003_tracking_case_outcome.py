"""tracking_cases.outcome, outcome_ref: a closed case names where the child's education is confirmed

Revision ID: 0003_tracking
Revises: 0002_tracking
Create Date: 2026-11-27 02:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0003_tracking"
down_revision: str | None = "0002_tracking"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "tracking_cases", sa.Column("outcome", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
    )
    op.add_column(
        "tracking_cases", sa.Column("outcome_ref", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("tracking_cases", "outcome_ref")
    op.drop_column("tracking_cases", "outcome")
