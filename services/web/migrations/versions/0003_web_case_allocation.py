"""web: automatic case allocation (how an owner was set, and why an allocation failed)

Revision ID: 0003_web_case_allocation
Revises: 0002_web_casework
Create Date: 2026-11-27 05:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0003_web_case_allocation"
down_revision: str | Sequence[str] | None = "0002_web_casework"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("web_case_work", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("owner_source", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
        )
        batch_op.add_column(
            sa.Column("allocation_problem", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True)
        )
        batch_op.add_column(sa.Column("allocation_tried_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("web_case_work", schema=None) as batch_op:
        batch_op.drop_column("allocation_tried_at")
        batch_op.drop_column("allocation_problem")
        batch_op.drop_column("owner_source")
