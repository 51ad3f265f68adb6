"""Project what the case agent decided into the case store. Every write is idempotent: the case row is an
upsert of the table's state, timeline rows and review items are keyed by (child, event), so a redelivery
changes nothing.

A batch of outcomes is projected in one transaction: one query per table for what already exists (not one
per row), the case rows as one upsert (the last outcome of a case in the batch wins: outcomes are in order),
the new timeline rows as one insert, then the touched cases' spells (spells.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from services.tracking import spells
from services.tracking.bulk import insert_rows, upsert_rows
from services.tracking.cases import Outcome
from services.tracking.identity import review_id_for
from services.tracking.models import (
    TrackingCase,
    TrackingRegisterEntry,
    TrackingRegisterHistory,
    TrackingReviewItem,
    TrackingTimelineEntry,
)
from services.tracking.register import RegisterStatus
from shared.db import session_scope
from shared.events.envelope import utcnow
from shared.sql import any_of


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
    # Each touched case's spells again from its whole timeline (a late fact can change any of them).
    spells.refresh(
        session,
        {
            r["child_id"]: spells.CaseKey(r["la_code"], r["vulnerabilities"], r["merged_into"])
            for r in cases.values()
        },
    )
    _project_register(session, outcomes)


def _register_changed(outcome: Outcome) -> bool:
    return outcome.record.case.register_status != outcome.register_before


def _project_register(session: Session, outcomes: Sequence[Outcome]) -> None:
    """The register of children not in school: an entry row per child whose status this batch changed (its
    status as the last outcome leaves it), and a history row per fact that changed it or brought the Act's
    information (idempotent on (child, event))."""
    touched = [o for o in outcomes if o.timeline and (_register_changed(o) or o.register_details)]
    if not touched:
        return
    wanted = {(o.record.child_id, o.timeline[0].event_id) for o in touched}
    stored = {
        (c, e)
        for c, e in session.exec(
            select(TrackingRegisterHistory.child_id, TrackingRegisterHistory.event_id).where(
                any_of(session, col(TrackingRegisterHistory.child_id), {c for c, _ in wanted}),
                any_of(session, col(TrackingRegisterHistory.event_id), {e for _, e in wanted}),
            )
        ).all()
    }
    entries: dict[str, dict[str, Any]] = {}
    history: list[dict[str, Any]] = []
    now = utcnow()
    for outcome in touched:
        record, status = outcome.record, outcome.record.case.register_status
        if _register_changed(outcome):
            entries[record.child_id] = _entry_row(record.child_id, record.la_code, status, now)
        row = outcome.timeline[0]  # the fact itself (or the merge / split)
        if (record.child_id, row.event_id) in stored:
            continue
        stored.add((record.child_id, row.event_id))
        before = outcome.register_before
        change = (
            "added" if status.on and not before.on
            else "removed" if before.on and not status.on
            else "updated" if status != before
            else "details"
        )  # fmt: skip
        history.append(
            {
                "child_id": record.child_id,
                "la_code": record.la_code,
                "event_id": row.event_id,
                "event_type": row.event_type,
                "occurred_at": row.occurred_at,
                "change": change,
                "on_register": status.on,
                "category": status.category,
                "education": _text(status.education),
                "left_reason": status.left_reason,
                "left_ref": status.left_ref,
                "source_system": (outcome.source_system or "")[:64] or None,
                "details": json.dumps(outcome.register_details) if outcome.register_details else None,
                "recorded_at": now,
            }
        )
    upsert_rows(session, TrackingRegisterEntry, list(entries.values()), key="child_id", update=_ENTRY_UPDATES)
    insert_rows(session, TrackingRegisterHistory, history)


_ENTRY_UPDATES = (
    "on_register",
    "category",
    "education",
    "arrangement",
    "ehe_reason",
    "since",
    "changed_at",
    "left_at",
    "left_reason",
    "left_ref",
    "review_on",
    "handed_to",
    "school_urn",
    "updated_at",
)


def _entry_row(child_id: str, la_code: str, status: RegisterStatus, now: datetime) -> dict[str, Any]:
    return {
        "child_id": child_id,
        "la_code": la_code,
        "on_register": status.on,
        "category": status.category,
        "education": _text(status.education),
        "arrangement": _text(status.arrangement),
        "ehe_reason": status.ehe_reason,
        "since": status.since,
        "changed_at": status.changed_at,
        "left_at": status.left_at,
        "left_reason": status.left_reason,
        "left_ref": status.left_ref,
        "review_on": status.review_on,
        "handed_to": status.handed_to,
        "school_urn": status.school_urn,
        "updated_at": now,
    }


def _existing_timeline(session: Session, outcomes: Sequence[Outcome]) -> set[tuple[str, str]]:
    """(child_id, event_id) of the batch's timeline rows already stored: one query for the batch."""
    wanted = {(o.record.child_id, row.event_id) for o in outcomes for row in o.timeline}
    if not wanted:
        return set()
    rows = session.exec(
        select(TrackingTimelineEntry.child_id, TrackingTimelineEntry.event_id).where(
            any_of(session, col(TrackingTimelineEntry.child_id), {c for c, _ in wanted}),
            any_of(session, col(TrackingTimelineEntry.event_id), {e for _, e in wanted}),
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
            select(TrackingReviewItem.review_id).where(
                any_of(session, col(TrackingReviewItem.review_id), wanted)
            )
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
                "codes": row.codes,
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
