"""The timeline's codes are a structured field (issue 13): written from the fact, read by the reports, never
parsed out of the note; a store upgraded from notes with ``k=v`` codes gets them once, by the migration."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from pathlib import Path

from alembic import command
from sqlalchemy import insert, select

from devtools.samples import sample_event_dict
from services.tracking.cases import apply_child_fact, new_record
from services.tracking.history import spells
from services.tracking.models import TrackingTimelineEntry
from services.tracking.stream.app import MIGRATIONS
from shared.db import alembic_config, make_engine
from shared.events.catalogue import decode_inbound
from shared.events.envelope import Source
from shared.events.internal import ChildFact, ChildFactPayload

CHILD = str(uuid.uuid4())


def _apply(event_type: str, day: int, **payload: object) -> list:  # type: ignore[type-arg]
    data = sample_event_dict(event_type, on=date(2025, 11, day))
    data["payload"].update(payload)
    e = decode_inbound(data)
    fact = ChildFact(
        event_id=e.event_id,
        occurred_at=e.occurred_at,
        source=Source(system="t", la_code="801"),
        payload=ChildFactPayload(
            child_id=uuid.UUID(CHILD), la_code="801", match="new", fact=e.model_dump(mode="json")
        ),
    )
    return apply_child_fact(new_record(CHILD, "801"), fact).timeline


def test_a_provision_fact_carries_its_codes_not_in_its_note() -> None:
    (row,) = _apply("provision-started", 3)
    assert row.codes is not None and row.codes["provision_type"]
    assert row.note is None or "=" not in row.note


def test_a_stated_reason_is_replayed_from_the_codes() -> None:
    (row,) = _apply("referral-received", 3, reason="whereabouts_unknown")
    assert row.codes == {"reason": "whereabouts_unknown"}
    entry = TrackingTimelineEntry(
        child_id=CHILD,
        la_code="801",
        event_id=row.event_id,
        event_type=row.event_type,
        event_kind=row.event_kind,
        occurred_at=row.occurred_at,
        verdict=str(row.verdict),
        to_state=str(row.to_state) if row.to_state else None,
        note="reason=awaiting_place",  # a note is never read for codes
        codes=row.codes,
    )
    (spell,) = spells([entry], [])
    assert spell.reason == row.codes["reason"]


def test_the_migration_moves_old_note_codes_into_codes(tmp_path: Path) -> None:
    check_migration(f"sqlite:///{tmp_path / 'tracking.db'}")


def check_migration(url: str) -> None:
    """Old rows with codes in their notes, upgraded: codes in ``codes``, human text in the note; and back."""
    config = alembic_config(url, MIGRATIONS, "tracking")
    command.upgrade(config, "0006_tracking_outbox")
    engine = make_engine(url)
    at = datetime(2025, 11, 3, 9, 30, tzinfo=UTC)
    notes = {
        "a": "provision_type=alternative_provision;hours_per_week=12.5;full_time=False",
        "b": "late fact, in event-time order it was move;reason=family_moved",
        "c": "forwarded to surviving child 1234",
        "d": None,
    }
    columns = (
        "child_id",
        "la_code",
        "event_id",
        "event_type",
        "occurred_at",
        "verdict",
        "note",
        "recorded_at",
    )
    table = TrackingTimelineEntry.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        for key, note in notes.items():
            values = (CHILD, "801", key, "provision-started", at, "move", note, at)
            # The table as 0006 left it: no codes column yet.
            conn.execute(insert(table).values(dict(zip(columns, values, strict=True))))
    command.upgrade(config, "head")
    with engine.connect() as conn:
        got = {
            r.event_id: (r.note, r.codes)
            for r in conn.execute(select(table.c.event_id, table.c.note, table.c.codes))
        }
    assert got == {
        "a": (
            None,
            {"provision_type": "alternative_provision", "hours_per_week": "12.5", "full_time": "False"},
        ),
        "b": ("late fact, in event-time order it was move", {"reason": "family_moved"}),
        "c": ("forwarded to surviving child 1234", None),
        "d": (None, None),
    }
    command.downgrade(config, "0006_tracking_outbox")
    old = table.c
    with engine.connect() as conn:
        notes_back: dict[str, str | None] = dict(conn.execute(select(old.event_id, old.note)).all())
    assert notes_back == notes
    engine.dispose()
