"""Project what the case agent decided into the case store. Every write is idempotent: the case row is an
upsert of the table's state, timeline rows and review items are keyed by (child, event), so a redelivery
changes nothing.

A batch of outcomes is projected in one transaction: one query per table for what already exists (not one
per row), the case rows as one upsert (the last outcome of a case in the batch wins: outcomes are in order),
the new timeline rows as one insert."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from services.tracking.bulk import insert_rows, upsert_rows
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
        project_into(session, outcomes)


def project_into(session: Session, outcomes: Sequence[Outcome]) -> None:
    """``project_many`` within the caller's transaction (the rebuild commits its offsets in the same one)."""
    if not outcomes:
        return
    timeline = _existing_timeline(session, outcomes)
    reviews = _existing_reviews(session, outcomes)
    cases: dict[str, dict[str, Any]] = {}  # case_id -> its row as the last outcome leaves it
    new_rows: list[dict[str, Any]] = []
    for outcome in outcomes:
        cases[outcome.record.case_id] = _case_row(outcome)
        new_rows += _timeline_rows(timeline, outcome)
        _add_reviews(session, reviews, outcome)
    session.flush()  # review items
    upsert_rows(session, TrackingCase, list(cases.values()), key="case_id", update=_CASE_UPDATES)
    insert_rows(session, TrackingTimelineEntry, new_rows)  # append-only: no ORM objects needed


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


def _timeline_rows(stored: set[tuple[str, str]], outcome: Outcome) -> list[dict[str, Any]]:
    record, now = outcome.record, utcnow()
    rows: list[dict[str, Any]] = []
    for row in outcome.timeline:
        key = (record.child_id, row.event_id)
        if key in stored:
            continue
        stored.add(key)  # a second row for the same fact later in the batch is a redelivery too
        rows.append(
            {
                "child_id": record.child_id,
                "la_code": record.la_code,
                "event_id": row.event_id,
                "event_type": row.event_type,
                "event_kind": row.event_kind,
                "occurred_at": row.occurred_at,
                "verdict": str(row.verdict),
                "from_state": _text(row.from_state),
                "to_state": _text(row.to_state),
                "school_urn": row.school_urn,
                "note": row.note,
                "recorded_at": now,
            }
        )
    return rows


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


_CASE_UPDATES = (
    "state",
    "reason",
    "cause_event_id",
    "cause_event_type",
    "cause_occurred_at",
    "vulnerabilities",
    "social_care_status",
    "has_social_worker",
    "safeguarding_concern",
    "destination_la_code",
    "outcome",
    "outcome_ref",
    "open_deadlines",
    "merged_into",
    "facts_applied",
    "updated_at",
)


def _case_row(outcome: Outcome) -> dict[str, Any]:
    """The case row is the table's state of the case: an upsert of all of it."""
    record, case = outcome.record, outcome.record.case
    return {
        "case_id": record.case_id,
        "child_id": record.child_id,
        "la_code": record.la_code,
        "state": _text(case.state),
        "reason": _text(case.reason),
        "cause_event_id": case.cause_event_id,
        "cause_event_type": case.cause_event_type,
        "cause_occurred_at": case.cause_occurred_at,
        "vulnerabilities": ",".join(case.vulnerabilities),
        "social_care_status": str(case.social_care_status),
        "has_social_worker": case.has_social_worker,
        "safeguarding_concern": case.safeguarding_concern,
        "destination_la_code": case.destination_la_code,
        "outcome": _text(case.outcome),
        "outcome_ref": case.outcome_ref,
        "open_deadlines": ",".join(case.open_deadlines),
        "merged_into": record.merged_into,
        "facts_applied": len(record.facts),
        "updated_at": utcnow(),
    }


def _text(value: object) -> str | None:
    return None if value is None else str(value)
