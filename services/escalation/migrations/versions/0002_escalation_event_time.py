"""escalation by event time: input watermarks, the partition and episode end of each deadline, withheld and
late steps

Deadlines pending when this runs get partition 0: they are decided on partition 0's horizon, which differs
from their own only while the inputs lag (every horizon reaches now once the worker has caught up).

Revision ID: 0002_escalation_event_time
Revises: 0001_escalation_initial
Create Date: 2026-11-27 01:55:00.000000

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_escalation_event_time"
down_revision: str | Sequence[str] | None = "0001_escalation_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "escalation_watermarks",
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("watermark", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("topic", "partition"),
    )
    with op.batch_alter_table("escalation_deadlines") as batch:
        batch.add_column(sa.Column("partition", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("end_reason", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("end_status", sa.String(length=12), nullable=True))
    with op.batch_alter_table("escalation_escalations") as batch:
        batch.add_column(sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("escalation_steps") as batch:
        batch.add_column(sa.Column("withheld", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("late", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("escalation_steps") as batch:
        batch.drop_column("late")
        batch.drop_column("withheld")
    with op.batch_alter_table("escalation_deadlines") as batch:
        batch.drop_column("end_status")
        batch.drop_column("end_reason")
        batch.drop_column("ended_at")
        batch.drop_column("partition")
    with op.batch_alter_table("escalation_escalations") as batch:
        batch.drop_column("ended_at")
    op.drop_table("escalation_watermarks")
