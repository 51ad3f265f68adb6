"""escalation: tracking's mark of each child-events partition (docs/ESCALATION.md "Tracking's lag in the
watermark") keeps the offset tracking has folded the partition to, next to its event time

Revision ID: 0005_tracking_mark_offset
Revises: 0004_case_resolutions
Create Date: 2026-11-27 14:30:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_tracking_mark_offset"
down_revision: str | Sequence[str] | None = "0004_case_resolutions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("escalation_watermarks") as batch:
        batch.add_column(sa.Column("next_offset", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("escalation_watermarks") as batch:
        batch.drop_column("next_offset")
