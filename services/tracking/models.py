"""The tracking service's tables (tracking_*): children and their identifiers, identity resolutions, cases,
the
append-only case timeline, review items for a person, and the audit of reads of a child's record."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.events.envelope import utcnow
from shared.outbox import OutboxBase


class TrackingChild(SQLModel, table=True):
    __tablename__ = "tracking_children"

    child_id: str = Field(primary_key=True, max_length=36)
    la_code: str = Field(index=True, max_length=3)
    forename: str | None = Field(default=None, max_length=100)
    surname: str | None = Field(default=None, max_length=100)
    surname_norm: str | None = Field(default=None, max_length=100, index=True)
    date_of_birth: date | None = Field(default=None, index=True)
    sex: str | None = Field(default=None, max_length=1)
    postcode: str | None = Field(default=None, max_length=10)
    dob_block: str | None = Field(default=None, index=True, max_length=40)
    name_block: str | None = Field(default=None, index=True, max_length=80)
    merged_into: str | None = Field(default=None, max_length=36, index=True)
    created_by_event_id: str = Field(max_length=36)
    created_at: datetime = Field(default_factory=utcnow)


class TrackingIdentifier(SQLModel, table=True):
    """A strong identifier of a child in one LA. Unique per LA: two workers cannot give one UPN two
    children."""

    __tablename__ = "tracking_identifiers"
    __table_args__ = (UniqueConstraint("la_code", "kind", "value", name="uq_tracking_identifier"),)

    id: int | None = Field(default=None, primary_key=True)
    la_code: str = Field(max_length=3)
    kind: str = Field(max_length=16)  # upn, uln, nhs_number, la_child_id
    # Indexed alone too: cross-LA matching looks a value up in every other LA (crossla.py).
    value: str = Field(max_length=64, index=True)
    child_id: str = Field(index=True, max_length=36)
    first_event_id: str = Field(max_length=36)


class TrackingResolution(SQLModel, table=True):
    """Which child an inbound event was resolved to: redelivery of the event resolves it the same way."""

    __tablename__ = "tracking_resolutions"

    event_id: str = Field(primary_key=True, max_length=36)
    child_id: str = Field(index=True, max_length=36)
    la_code: str = Field(max_length=3)
    match: str = Field(max_length=16)
    score: float | None = None
    # The child whose identifier matched, before following merges: undoing that merge moves this fact back.
    matched_child_id: str | None = Field(default=None, index=True, max_length=36)
    resolved_at: datetime = Field(default_factory=utcnow)


class TrackingCase(SQLModel, table=True):
    __tablename__ = "tracking_cases"

    case_id: str = Field(primary_key=True, max_length=36)
    child_id: str = Field(index=True, unique=True, max_length=36)
    la_code: str = Field(index=True, max_length=3)
    state: str | None = Field(default=None, index=True, max_length=32)
    reason: str | None = Field(default=None, max_length=40)
    cause_event_id: str | None = Field(default=None, max_length=36)
    cause_event_type: str | None = Field(default=None, max_length=40)
    cause_occurred_at: datetime | None = None
    vulnerabilities: str = Field(default="", max_length=400)  # comma-separated codes
    social_care_status: str = Field(default="none", max_length=32)
    has_social_worker: bool = False
    safeguarding_concern: bool = False
    destination_la_code: str | None = Field(default=None, max_length=3)
    # A closed case names where the child's education is confirmed (CaseOutcome) and what names it.
    outcome: str | None = Field(default=None, max_length=32)
    outcome_ref: str | None = Field(default=None, max_length=16)
    open_deadlines: str = Field(default="", max_length=400)
    merged_into: str | None = Field(default=None, max_length=36)
    facts_applied: int = 0
    updated_at: datetime = Field(default_factory=utcnow)


class TrackingTimelineEntry(SQLModel, table=True):
    """One row per fact a child's case saw, never updated or deleted; a redelivered fact adds nothing."""

    __tablename__ = "tracking_timeline"
    __table_args__ = (UniqueConstraint("child_id", "event_id", name="uq_tracking_timeline_event"),)

    id: int | None = Field(default=None, primary_key=True)
    child_id: str = Field(index=True, max_length=36)
    la_code: str = Field(index=True, max_length=3)
    event_id: str = Field(max_length=36)
    event_type: str = Field(max_length=40)
    event_kind: str | None = Field(default=None, max_length=80)
    occurred_at: datetime
    verdict: str = Field(max_length=16)  # move, stay, refuse, late, merged, split, forwarded
    from_state: str | None = Field(default=None, max_length=32)
    to_state: str | None = Field(default=None, max_length=32)
    school_urn: str | None = Field(default=None, max_length=6)
    note: str | None = Field(default=None, sa_column=Column(Text))
    recorded_at: datetime = Field(default_factory=utcnow)


class TrackingReviewItem(SQLModel, table=True):
    """Something a person must decide: a possible duplicate child, or a fact the case could not take."""

    __tablename__ = "tracking_review_items"

    review_id: str = Field(primary_key=True, max_length=36)
    la_code: str = Field(index=True, max_length=3)
    kind: str = Field(max_length=32)  # possible_duplicate, conflicting_identifiers, refused_transition
    child_id: str = Field(index=True, max_length=36)
    other_child_id: str | None = Field(default=None, max_length=36)
    event_id: str = Field(max_length=36)
    score: float | None = None
    detail: str | None = Field(default=None, max_length=200)  # codes only, no personal data
    status: str = Field(default="open", index=True, max_length=16)  # open, linked, not_linked, resolved
    decided_by: str | None = Field(default=None, max_length=128)
    decided_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class TrackingReadAudit(SQLModel, table=True):
    """Who read which child's record, when and why."""

    __tablename__ = "tracking_read_audit"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    subject: str = Field(max_length=128)
    role: str = Field(max_length=32)
    la_code: str = Field(max_length=3)
    action: str = Field(max_length=40)
    child_id: str | None = Field(default=None, max_length=36, index=True)
    reason: str = Field(max_length=500)


class TrackingCrossLALink(SQLModel, table=True):
    """A child sought by one LA (an open case) named by a fact in another LA of this deployment: by a strong
    identifier (exact) or by names, date of birth and sex (scored). Each LA sees only its own side: the sought
    LA that the child may be in the found LA (the fact's type and date), the found LA that the child is sought
    by the other (its open state); neither reads the other's case or timeline. A person confirms (the sought
    LA's case closes with the found LA as destination) or rejects (both keep their own records)."""

    __tablename__ = "tracking_cross_la_links"
    __table_args__ = (
        UniqueConstraint("sought_child_id", "found_child_id", name="uq_tracking_cross_la_pair"),
    )

    link_id: str = Field(primary_key=True, max_length=36)
    sought_la_code: str = Field(index=True, max_length=3)
    sought_child_id: str = Field(index=True, max_length=36)
    sought_state: str = Field(max_length=32)  # the open state the sought LA's case was in
    missing_since: datetime | None = None  # event time the sought case entered that open spell
    found_la_code: str = Field(index=True, max_length=3)
    found_child_id: str = Field(index=True, max_length=36)
    event_id: str = Field(max_length=36)  # the found LA's fact that made the match
    fact_type: str = Field(max_length=40)
    fact_occurred_at: datetime
    match: str = Field(max_length=16)  # exact, scored
    identifier_kind: str | None = Field(default=None, max_length=16)  # upn, uln, nhs_number (never its value)
    score: float | None = None
    fields_agreed: str = Field(default="", max_length=100)  # comma-separated field names
    sought_review_id: str = Field(index=True, max_length=36)
    found_review_id: str = Field(index=True, max_length=36)
    status: str = Field(default="open", index=True, max_length=16)  # open, confirmed, rejected
    decided_by: str | None = Field(default=None, max_length=128)
    decided_la_code: str | None = Field(default=None, max_length=3)
    decided_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class TrackingOutbox(OutboxBase, table=True):
    """Events a person's review decision publishes (merge, split, cross-LA confirmation), written in the
    decision's transaction and published by the API's outbox relay."""

    __tablename__ = "tracking_outbox"
