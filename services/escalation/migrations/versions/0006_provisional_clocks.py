"""escalation: a clock started by a provisional transition (tracking's fold ahead) is marked until its in-order
twin is read, so an in-order transition read before the twin does not end it (docs/ESCALATION.md, "The urgent
lane's transitions and the case's order")

Revision ID: 0006_provisional_clocks
Revises: 0005_tracking_mark_offset
Create Date: 2026-11-28 18:00:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_provisional_clocks"
down_revision: str | Sequence[str] | None = "0005_tracking_mark_offset"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("escalation_deadlines", "escalation_cases"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("provisional", sa.Boolean(), nullable=False, server_default=sa.false())
            )


def downgrade() -> None:
    for table in ("escalation_deadlines", "escalation_cases"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("provisional")
