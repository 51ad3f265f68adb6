"""tracking_peer_*: found anywhere between deployments (issue 18): hashed identifiers per peer, peers'
standing queries, the outbox to peers, accepted nonces; the peer of a cross-LA link

Revision ID: 0006_tracking_peers
Revises: 0005_tracking
Create Date: 2026-11-27 05:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0006_tracking_peers"
down_revision: str | None = "0005_tracking"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _s(length: int) -> sqlmodel.sql.sqltypes.AutoString:
    return sqlmodel.sql.sqltypes.AutoString(length=length)


def upgrade() -> None:
    op.add_column("tracking_cross_la_links", sa.Column("peer", _s(64), nullable=True))
    op.add_column("tracking_cross_la_links", sa.Column("peer_contact", _s(200), nullable=True))
    op.create_table(
        "tracking_peer_digests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("peer", _s(64), nullable=False),
        sa.Column("digest", _s(64), nullable=False),
        sa.Column("kind", _s(16), nullable=False),
        sa.Column("child_id", _s(36), nullable=False),
        sa.Column("la_code", _s(3), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("peer", "digest", "child_id", name="uq_tracking_peer_digest"),
    )
    op.create_index("ix_tracking_peer_digests_digest", "tracking_peer_digests", ["digest"])
    op.create_index("ix_tracking_peer_digests_child_id", "tracking_peer_digests", ["child_id"])
    op.create_table(
        "tracking_peer_queries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("query_id", _s(36), nullable=False),
        sa.Column("peer", _s(64), nullable=False),
        sa.Column("digest", _s(64), nullable=False),
        sa.Column("kind", _s(16), nullable=False),
        sa.Column("sought_la_code", _s(3), nullable=False),
        sa.Column("sought_state", _s(32), nullable=False),
        sa.Column("missing_since", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("contact", _s(200), nullable=False),
        sa.Column("received_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("query_id", "digest", name="uq_tracking_peer_query"),
    )
    op.create_index("ix_tracking_peer_queries_query_id", "tracking_peer_queries", ["query_id"])
    op.create_index("ix_tracking_peer_queries_digest", "tracking_peer_queries", ["digest"])
    op.create_table(
        "tracking_peer_outbox",
        sa.Column("message_id", _s(36), nullable=False),
        sa.Column("peer", _s(64), nullable=False),
        sa.Column("kind", _s(16), nullable=False),
        sa.Column("query_id", _s(36), nullable=True),
        sa.Column("child_id", _s(36), nullable=True),
        sa.Column("la_code", _s(3), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", _s(200), nullable=True),
        sa.Column("sent_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("message_id"),
    )
    for column in ("peer", "query_id", "sent_at"):
        op.create_index(f"ix_tracking_peer_outbox_{column}", "tracking_peer_outbox", [column])
    op.create_table(
        "tracking_peer_nonces",
        sa.Column("peer", _s(64), nullable=False),
        sa.Column("nonce", _s(64), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("peer", "nonce"),
    )
    op.create_index("ix_tracking_peer_nonces_at", "tracking_peer_nonces", ["at"])


def downgrade() -> None:
    for table in (
        "tracking_peer_nonces",
        "tracking_peer_outbox",
        "tracking_peer_queries",
        "tracking_peer_digests",
    ):
        op.drop_table(table)
    op.drop_column("tracking_cross_la_links", "peer_contact")
    op.drop_column("tracking_cross_la_links", "peer")
