"""Project what the case agent decided into the case store. Every write is idempotent: the case row is an
upsert of the table's state, timeline rows and review items are keyed by (child, event), so a redelivery
changes nothing.

A batch of outcomes is projected in one transaction with one query per table for what already exists (not
one per row); outcomes of the same child are applied in order, so its case row ends as the last one says."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from services.tracking.cases import Outcome
from services.tracking.identity import review_id_for
from services.tracking.models import TrackingCase, TrackingReviewItem, TrackingTimelineEntry
from shared.db import session_scope
from shared.events.envelope import utcnow


def project(engine: Engine, outcome: Outcome) -> None:
    project_many(engine, [outcome])


def project_many(engine: Engine, outcomes: Sequence[Outcome]) -> None:
    if not outcomes:
        return
    with session_scope(engine) as session:
        cases = _cases(session, {o.record.case_id for o in outcomes})
        timeline = _existing_timeline(session, outcomes)
        reviews = _existing_reviews(session, outcomes)
        for outcome in outcomes:
            _upsert_case(session, cases, outcome)
            _add_timeline(session, timeline, outcome)
            _add_reviews(session, reviews, outcome)


def _cases(session: Session, case_ids: set[str]) -> dict[str, TrackingCase]:
    rows = session.exec(select(TrackingCase).where(col(TrackingCase.case_id).in_(case_ids))).all()
    return {row.case_id: row for row in rows}


def _existing_timeline(session: Session, outcomes: Sequence[Outcome]) -> set[tuple[str, str]]:
    """(child_id, event_id) of the batch's timeline rows already stored: one query for the batch."""
    wanted = {(o.record.child_id, row.event_id) for o in outcomes for row in o.timeline}
    if not wanted:
        return set()
    rows = session.exec(
        select(TrackingTimelineEntry.child_id, TrackingTimelineEntry.event_id).where(
            col(TrackingTimelineEntry.child_id).in_({c for c, _ in wanted}),
            col(TrackingTimelineEntry.event_id).in_({e for _, e in wanted}),
        )
    ).all()
    return {(c, e) for c, e in rows if (c, e) in wanted}


def _refused_review_ids(outcome: Outcome) -> list[tuple[str, str, str]]:
    child_id = outcome.record.child_id
    return [(review_id_for("refused_transition", child_id, e), e, kind) for e, kind in outcome.refused]


def _existing_reviews(session: Session, outcomes: Sequence[Outcome]) -> set[str]:
    wanted = {rid for o in outcomes for rid, _, _ in _refused_review_ids(o)}
    if not wanted:
        return set()
    return set(
        session.exec(
            select(TrackingReviewItem.review_id).where(col(TrackingReviewItem.review_id).in_(wanted))
        ).all()
    )


def _add_timeline(session: Session, stored: set[tuple[str, str]], outcome: Outcome) -> None:
    record = outcome.record
    for row in outcome.timeline:
        key = (record.child_id, row.event_id)
        if key in stored:
            continue
        stored.add(key)  # a second row for the same fact later in the batch is a redelivery too
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


def _add_reviews(session: Session, stored: set[str], outcome: Outcome) -> None:
    record = outcome.record
    for rid, event_id, kind in _refused_review_ids(outcome):
        if rid in stored:
            continue
        stored.add(rid)
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


def _upsert_case(session: Session, cases: dict[str, TrackingCase], outcome: Outcome) -> None:
    record, case = outcome.record, outcome.record.case
    row = cases.get(record.case_id)
    if row is None:
        row = cases[record.case_id] = TrackingCase(
            case_id=record.case_id, child_id=record.child_id, la_code=record.la_code
        )
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
