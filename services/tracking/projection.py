"""Project what the case agent decided into the case store. Every write is idempotent: the case row is an
upsert
of the table's state, timeline rows and review items are keyed by (child, event), so a redelivery changes
nothing."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from services.tracking.cases import Outcome
from services.tracking.identity import review_id_for
from services.tracking.models import TrackingCase, TrackingReviewItem, TrackingTimelineEntry
from shared.db import session_scope
from shared.events.envelope import utcnow


def project(engine: Engine, outcome: Outcome) -> None:
    record = outcome.record
    with session_scope(engine) as session:
        _upsert_case(session, outcome)
        for row in outcome.timeline:
            exists = session.exec(
                select(TrackingTimelineEntry.id).where(
                    TrackingTimelineEntry.child_id == record.child_id,
                    TrackingTimelineEntry.event_id == row.event_id,
                )
            ).first()
            if exists is None:
                session.add(
                    TrackingTimelineEntry(
                        child_id=record.child_id,
                        la_code=record.la_code,
                        event_id=row.event_id,
                        event_type=row.event_type,
                        event_kind=row.event_kind,
                        occurred_at=row.occurred_at,
                        verdict=str(row.verdict),
                        from_state=row.from_state,
                        to_state=row.to_state,
                        school_urn=row.school_urn,
                        note=row.note,
                    )
                )
        for event_id, kind in outcome.refused:
            rid = review_id_for("refused_transition", record.child_id, event_id)
            if session.get(TrackingReviewItem, rid) is None:
                session.add(
                    TrackingReviewItem(
                        review_id=rid,
                        la_code=record.la_code,
                        kind="refused_transition",
                        child_id=record.child_id,
                        event_id=event_id,
                        detail=f"{kind} refused in state {record.case.state or 'no_case'}",
                    )
                )


def _upsert_case(session: Session, outcome: Outcome) -> None:
    record, case = outcome.record, outcome.record.case
    row = session.get(TrackingCase, record.case_id)
    if row is None:
        row = TrackingCase(case_id=record.case_id, child_id=record.child_id, la_code=record.la_code)
    row.state = case.state
    row.reason = case.reason
    row.cause_event_id = case.cause_event_id
    row.cause_event_type = case.cause_event_type
    row.cause_occurred_at = case.cause_occurred_at
    row.vulnerabilities = ",".join(case.vulnerabilities)
    row.social_care_status = case.social_care_status
    row.has_social_worker = case.has_social_worker
    row.safeguarding_concern = case.safeguarding_concern
    row.destination_la_code = case.destination_la_code
    row.open_deadlines = ",".join(case.open_deadlines)
    row.merged_into = record.merged_into
    row.facts_applied = len(record.facts)
    row.updated_at = utcnow()
    session.add(row)
