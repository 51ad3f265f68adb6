"""tracking_timeline.codes: a fact's provision, exclusion and stated-reason codes as a JSON object instead of
``key=value;...`` in the free-text note (issue 13). Rows written before keep their codes: they are parsed out
of the note once here, and the note keeps only its human text (what the case logic now writes, so a store
rebuilt from the log compares equal to an upgraded one).

Revision ID: 0009_timeline_codes
Revises: 0006_tracking_outbox
Create Date: 2026-11-27 08:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_timeline_codes"
down_revision: str | None = "0006_tracking_outbox"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMELINE = sa.table(
    "tracking_timeline", sa.column("id", sa.Integer), sa.column("note", sa.Text), sa.column("codes", sa.JSON)
)
BATCH = 5_000


def split_note(note: str) -> tuple[str | None, dict[str, str]]:
    """(human text, codes) of a note as the case logic wrote it: ``why;k=v;k=v`` or ``k=v;k=v``. A part
    with ``=`` is a code (the human texts the case logic writes have none)."""
    parts = note.split(";")
    codes = dict(part.split("=", 1) for part in parts if "=" in part)
    text = ";".join(part for part in parts if "=" not in part)
    return text or None, {k.strip(): v.strip() for k, v in codes.items()}


def upgrade() -> None:
    with op.batch_alter_table("tracking_timeline", schema=None) as batch_op:
        batch_op.add_column(sa.Column("codes", sa.JSON(), nullable=True))
    conn = op.get_bind()
    last = 0
    while True:
        rows = conn.execute(
            sa.select(TIMELINE.c.id, TIMELINE.c.note)
            .where(TIMELINE.c.id > last, TIMELINE.c.note.like("%=%"))
            .order_by(TIMELINE.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        for row_id, note in rows:
            text, codes = split_note(note)
            if codes:
                conn.execute(
                    sa.update(TIMELINE).where(TIMELINE.c.id == row_id).values(note=text, codes=codes)
                )
        last = rows[-1][0]


def downgrade() -> None:
    conn = op.get_bind()
    for row_id, note, codes in conn.execute(
        sa.select(TIMELINE.c.id, TIMELINE.c.note, TIMELINE.c.codes).where(TIMELINE.c.codes.is_not(None))
    ).all():
        pairs = [f"{k}={v}" for k, v in codes.items()]
        conn.execute(
            sa.update(TIMELINE)
            .where(TIMELINE.c.id == row_id)
            .values(note=";".join([*filter(None, [note]), *pairs]))
        )
    with op.batch_alter_table("tracking_timeline", schema=None) as batch_op:
        batch_op.drop_column("codes")
