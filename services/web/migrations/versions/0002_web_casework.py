"""web: case ownership and review dates (web_case_work), facts recorded in the web, a team for each user

Revision ID: 0002_web_casework
Revises: 0001_web_initial
Create Date: 2026-11-27 02:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0002_web_casework"
down_revision: str | Sequence[str] | None = "0001_web_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "web_case_work",
        sa.Column("case_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("la_code", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("owner_set_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("owner_set_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("review_due", sa.Date(), nullable=True),
        sa.Column("review_set_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("review_set_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("case_id"),
    )
    with op.batch_alter_table("web_case_work", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_case_work_la_code"), ["la_code"], unique=False)
        batch_op.create_index(batch_op.f("ix_web_case_work_owner"), ["owner"], unique=False)
        batch_op.create_index(batch_op.f("ix_web_case_work_review_due"), ["review_due"], unique=False)
    op.create_table(
        "web_recorded_facts",
        sa.Column("event_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("case_id", sqlmodel.sql.sqltypes.AutoString(length=36), nullable=False),
        sa.Column("la_code", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("event_type", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("recorded_by", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("event_id"),
    )
    with op.batch_alter_table("web_recorded_facts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_web_recorded_facts_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_web_recorded_facts_la_code"), ["la_code"], unique=False)
    with op.batch_alter_table("web_users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("team", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("web_users", schema=None) as batch_op:
        batch_op.drop_column("team")
    op.drop_table("web_recorded_facts")
    op.drop_table("web_case_work")
