"""notify_la.version: new each time an LA's directory is stored, so a process keeps its copy of the directory
while it is current instead of reading six tables for every alert

Revision ID: 0003_notify_directory_version
Revises: 0002_notify_alert_late
Create Date: 2026-11-28 08:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_notify_directory_version"
down_revision: str | None = "0002_notify_alert_late"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notify_la") as batch:
        batch.add_column(sa.Column("version", sa.String(length=32), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("notify_la") as batch:
        batch.drop_column("version")
