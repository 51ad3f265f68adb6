"""The batch paths of identity resolution and projection on PostgreSQL (bulk writes as arrays) give exactly
what one event at a time gives on SQLite: the same children, identifiers, resolutions, review items, cases and
timeline; a batch written again changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from services.tracking.cases import ChildRecord, Outcome, apply_child_fact, new_record
from services.tracking.identity import IdentityResolver
from services.tracking.models import TrackingCase, TrackingReviewItem, TrackingTimelineEntry
from services.tracking.projection import project, project_many
from services.tracking.stream.app import MIGRATIONS
from services.tracking.stream.identity_agent import child_fact
from shared.db import make_engine, migrate
from shared.events.envelope import Envelope
from tests.unit.test_tracking_identity_batch import _tables, scenario

pytestmark = pytest.mark.integration


def _sqlite(tmp_path: Path) -> Engine:
    url = f"sqlite:///{tmp_path / 'reference.db'}"
    migrate(url, MIGRATIONS, "tracking")
    return make_engine(url)


def _postgres(url: str) -> Engine:
    migrate(url, MIGRATIONS, "tracking")
    return make_engine(url)


def _outcomes(engine: Engine, events: list[Envelope], batch: int) -> list[Outcome]:
    """Resolve in batches and apply each fact to its child's record in order, as the two agents do."""
    resolver = IdentityResolver(engine)
    records: dict[str, ChildRecord] = {}
    outcomes: list[Outcome] = []
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        for inbound, resolution in zip(chunk, resolver.resolve_batch(chunk), strict=True):
            record = records.get(resolution.child_id) or new_record(resolution.child_id, "381")
            outcome = apply_child_fact(record, child_fact(inbound, resolution))
            records[resolution.child_id] = outcome.record
            if not outcome.duplicate:
                outcomes.append(outcome)
    return outcomes


def _plain(value: Any) -> Any:
    """SQLite gives back naive datetimes (UTC), PostgreSQL aware ones."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _rows(rows: Any, leave_out: tuple[str, ...]) -> list[tuple[Any, ...]]:
    return sorted(
        (tuple(_plain(v) for k, v in sorted(r.model_dump().items()) if k not in leave_out) for r in rows),
        key=repr,
    )


def _case_store(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with Session(engine) as session:
        return {
            "cases": _rows(session.exec(select(TrackingCase)).all(), ("updated_at",)),
            "timeline": _rows(session.exec(select(TrackingTimelineEntry)).all(), ("id", "recorded_at")),
            "reviews": _rows(session.exec(select(TrackingReviewItem)).all(), ("created_at",)),
        }


def test_batches_on_postgres_equal_one_by_one_on_sqlite(postgres_url: str, tmp_path: Path) -> None:
    events = scenario()
    reference = _sqlite(tmp_path)
    single = _outcomes(reference, events, batch=1)
    for outcome in single:
        project(reference, outcome)

    pg = _postgres(postgres_url)
    batched = _outcomes(pg, events, batch=64)
    for start in range(0, len(batched), 64):
        project_many(pg, batched[start : start + 64])
    assert _tables(pg) == _tables(reference)
    store = _case_store(pg)
    assert store == _case_store(reference)
    assert store["cases"] and store["timeline"]

    # The last batch written again (redelivered after a crash before its offsets were committed), and every
    # event resolved again: nothing changes.
    tail = len(batched) - len(batched) % 64 if len(batched) % 64 else len(batched) - 64
    project_many(pg, batched[tail:])
    IdentityResolver(pg).resolve_batch(events)
    assert _tables(pg) == _tables(reference)
    assert _case_store(pg) == store
