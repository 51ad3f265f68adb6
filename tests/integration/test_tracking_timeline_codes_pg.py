"""The timeline's structured codes on PostgreSQL: the bulk insert (arrays cast to ``json[]``) stores them as
SQLite does, and the migration from notes with ``k=v`` codes works on PostgreSQL's ``json`` type."""

from __future__ import annotations

import uuid
from datetime import date

import pytest
from sqlmodel import Session, col, select

from devtools.samples import sample_event_dict
from services.tracking.cases import apply_child_fact, new_record
from services.tracking.models import TrackingTimelineEntry
from services.tracking.projection import project_many
from services.tracking.stream.app import MIGRATIONS
from shared.db import make_engine, migrate
from shared.events.catalogue import decode_inbound
from shared.events.envelope import Source
from shared.events.internal import ChildFact, ChildFactPayload
from tests.unit.test_tracking_timeline_codes import check_migration

pytestmark = pytest.mark.integration


def test_codes_are_stored_by_the_bulk_insert(postgres_url: str) -> None:
    migrate(postgres_url, MIGRATIONS, "tracking")
    engine = make_engine(postgres_url)
    child = str(uuid.uuid4())
    record = new_record(child, "801")
    outcomes = []
    for day, (event_type, extra) in enumerate(
        [("referral-received", {"reason": "whereabouts_unknown"}), ("pupil-registered", {})], start=3
    ):
        data = sample_event_dict(event_type, on=date(2025, 11, day))
        data["payload"].update(extra)
        e = decode_inbound(data)
        fact = ChildFact(
            event_id=e.event_id,
            occurred_at=e.occurred_at,
            source=Source(system="t", la_code="801"),
            payload=ChildFactPayload(
                child_id=uuid.UUID(child), la_code="801", match="new", fact=e.model_dump(mode="json")
            ),
        )
        out = apply_child_fact(record, fact)
        record = out.record
        outcomes.append(out)
    project_many(engine, outcomes)
    with Session(engine) as session:
        rows = session.exec(
            select(TrackingTimelineEntry).order_by(col(TrackingTimelineEntry.occurred_at))
        ).all()
    assert [(r.event_type, r.codes) for r in rows] == [
        ("referral-received", {"reason": "whereabouts_unknown"}),
        ("pupil-registered", None),
    ]
    engine.dispose()


def test_the_migration_on_postgres(postgres_url: str) -> None:
    check_migration(postgres_url)
