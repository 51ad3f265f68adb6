"""escalation: the event time each clock counted from (a transfer clock that moves the case names the wait it
counted), and the social-care context per child whether or not a case is open

Revision ID: 0003_clock_start_child_ctx
Revises: 0002_escalation_event_time
Create Date: 2026-11-27 05:20:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_clock_start_child_ctx"
down_revision: str | Sequence[str] | None = "0002_escalation_event_time"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("escalation_deadlines") as batch:
        batch.add_column(sa.Column("clock_started_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "escalation_children",
        sa.Column("child_id", sa.String(length=36), nullable=False),
        sa.Column("la_code", sa.String(length=3), nullable=False),
        sa.Column("has_social_worker", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("social_care_status", sa.String(length=32), nullable=False, server_default="none"),
        sa.Column("vulnerabilities", sa.String(length=500), nullable=False, server_default=""),
        sa.Column("safeguarding_concern", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("child_id", "la_code"),
    )


def downgrade() -> None:
    op.drop_table("escalation_children")
    with op.batch_alter_table("escalation_deadlines") as batch:
        batch.drop_column("clock_started_at")
