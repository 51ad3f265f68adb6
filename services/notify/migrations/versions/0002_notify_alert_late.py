"""notify_alert.late: an alert sent from a backlog says so (escalation's `late` on the step); notify_alert's
case_id indexed (a case page's alerts, the inbox's "Mine": an IN list of case ids)

Revision ID: 0002_notify_alert_late
Revises: 0001_notify_initial
Create Date: 2026-11-27 05:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_notify_alert_late"
down_revision: str | None = "0001_notify_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notify_alert") as batch:
        batch.add_column(sa.Column("late", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_index("ix_notify_alert_case_id", "notify_alert", ["case_id"])


def downgrade() -> None:
    op.drop_index("ix_notify_alert_case_id", table_name="notify_alert")
    with op.batch_alter_table("notify_alert") as batch:
        batch.drop_column("late")
