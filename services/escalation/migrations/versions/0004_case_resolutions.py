"""escalation: every resolution of a case by event time, so a child fact read after the transition that
resolved the case later is ended where that resolution ended it (issue 22)

Cases resolved before this runs have none recorded: their newest state (when resolved) stands in for it.

Revision ID: 0004_case_resolutions
Revises: 0003_clock_start_child_ctx
Create Date: 2026-11-27 11:05:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_case_resolutions"
down_revision: str | Sequence[str] | None = "0003_clock_start_child_ctx"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("escalation_cases") as batch:
        batch.add_column(sa.Column("resolutions", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("escalation_cases") as batch:
        batch.drop_column("resolutions")
