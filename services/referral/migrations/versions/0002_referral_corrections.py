"""referral: a submission records the correction that replaced it

Revision ID: 0002_referral_corrections
Revises: 0001_referral
Create Date: 2026-11-27 02:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_referral_corrections"
down_revision: str | None = "0001_referral"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("referral_submissions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("corrected_by", sa.String(length=36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("referral_submissions", schema=None) as batch_op:
        batch_op.drop_column("corrected_by")
