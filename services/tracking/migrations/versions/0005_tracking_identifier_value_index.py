"""tracking_identifiers.value indexed alone: cross-LA matching looks an identifier up in every other LA

Revision ID: 0005_tracking
Revises: 0004_tracking
Create Date: 2026-11-27 02:55:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005_tracking"
down_revision: str | None = "0004_tracking"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_tracking_identifiers_value", "tracking_identifiers", ["value"])


def downgrade() -> None:
    op.drop_index("ix_tracking_identifiers_value", table_name="tracking_identifiers")
