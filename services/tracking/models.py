"""The tracking service's tables (tracking_*): children and their identifiers, identity resolutions, cases,
the append-only case timeline and the spells replayed from it, review items for a person, and the audit of
reads of a child's record."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Column, Text, UniqueConstraint
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
    note: str | None = Field(default=None, sa_column=Column(Text))  # human text only
    # The fact's provision, exclusion and stated-reason codes (facts.timeline_codes), which reports replay.
    codes: dict[str, str] | None = Field(default=None, sa_column=Column(JSON))
    recorded_at: datetime = Field(default_factory=utcnow)


class TrackingSpell(SQLModel, table=True):
    """One spell of a case's history: from ``starts_at`` (event time) until ``ends_at`` (the next spell's
    start; None for the current one) the case was in ``state`` for ``reason``. The replay of the child's
    timeline (history.py), rewritten by every projection that touches the child (spells.py), so a late fact,
    a re-fold and a rebuild leave the same rows; reports count "as of a date" from these in SQL."""

    __tablename__ = "tracking_spells"

    child_id: str = Field(primary_key=True, max_length=36)
    seq: int = Field(primary_key=True)  # the spell's place in the case's history, from 0
    la_code: str = Field(index=True, max_length=3)
    starts_at: datetime
    ends_at: datetime | None = None
    state: str = Field(max_length=32)
    reason: str | None = Field(default=None, max_length=40)
    # For a missing-education spell: the day (UTC) the unbroken run of such spells it belongs to began.
    cme_since: date | None = None
    vulnerabilities: str = Field(default="", max_length=400)  # the case's flags, as on its row


class TrackingDerived(SQLModel, table=True):
    """Which version of a derived table's replay the rows were built with (``tracking_spells``: spells.py).
    The service brings them up to date after its migrations, so no migration runs the service's own code
    (which moves on with the models, while a migration must not)."""

    __tablename__ = "tracking_derived"

    name: str = Field(primary_key=True, max_length=40)
    version: int
    refreshed_at: datetime


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
    # Set when the other LA is on another deployment (docs/TRACKING.md "Between deployments"): that peer's
    # id, and the other LA's contact as the peer told it. The other side's child id is then an opaque id
    # (this deployment never learns the peer's), its review item is the peer's.
    peer: str | None = Field(default=None, max_length=64)
    peer_contact: str | None = Field(default=None, max_length=200)


class TrackingPeerDigest(SQLModel, table=True):
    """A strong identifier of a child of this deployment as one peer would hash it (keyed by the secret
    shared with that peer): how a peer's query for a hashed identifier finds the child here. The raw value
    never leaves ``tracking_identifiers``."""

    __tablename__ = "tracking_peer_digests"
    __table_args__ = (UniqueConstraint("peer", "digest", "child_id", name="uq_tracking_peer_digest"),)

    id: int | None = Field(default=None, primary_key=True)
    peer: str = Field(max_length=64)
    digest: str = Field(max_length=64, index=True)
    kind: str = Field(max_length=16)
    child_id: str = Field(index=True, max_length=36)
    la_code: str = Field(max_length=3)


class TrackingPeerQuery(SQLModel, table=True):
    """A peer's standing question "do you know this child?" (one row per hashed identifier): kept while the
    peer's LA seeks the child, so a fact that names the child here later answers it. Holds the digest, the
    peer LA, its open state and since when, and its contact: nothing else of the child."""

    __tablename__ = "tracking_peer_queries"
    __table_args__ = (UniqueConstraint("query_id", "digest", name="uq_tracking_peer_query"),)

    id: int | None = Field(default=None, primary_key=True)
    query_id: str = Field(max_length=36, index=True)
    peer: str = Field(max_length=64)
    digest: str = Field(max_length=64, index=True)
    kind: str = Field(max_length=16)
    sought_la_code: str = Field(max_length=3)
    sought_state: str = Field(max_length=32)
    missing_since: datetime | None = None
    contact: str = Field(default="", max_length=200)
    received_at: datetime = Field(default_factory=utcnow)


class TrackingPeerOutbox(SQLModel, table=True):
    """A message to a peer (query, answer, decision), written in the transaction that decided it and sent
    by the API's sender until the peer accepts it. Its id is derived from what it says: written again, it
    is the same row."""

    __tablename__ = "tracking_peer_outbox"

    message_id: str = Field(primary_key=True, max_length=36)
    peer: str = Field(max_length=64, index=True)
    kind: str = Field(max_length=16)  # query, answer, decision
    query_id: str | None = Field(default=None, max_length=36, index=True)
    child_id: str | None = Field(default=None, max_length=36)  # this deployment's child (a query's)
    la_code: str = Field(max_length=3)
    body: str = Field(sa_column=Column(Text, nullable=False))  # JSON: hashed identifiers and codes only
    attempts: int = 0
    last_error: str | None = Field(default=None, max_length=200)
    sent_at: datetime | None = Field(default=None, index=True)
    created_at: datetime = Field(default_factory=utcnow)


class TrackingPeerNonce(SQLModel, table=True):
    """Nonces of signed peer requests already accepted: the same request twice is a replay."""

    __tablename__ = "tracking_peer_nonces"

    peer: str = Field(primary_key=True, max_length=64)
    nonce: str = Field(primary_key=True, max_length=64)
    at: datetime = Field(default_factory=utcnow, index=True)


class TrackingRegisterEntry(SQLModel, table=True):
    """A child's entry on the LA's register of children not in school (Education Act 1996 s.436B-436G): the
    status the fold of the child's facts gives (services/tracking/register.py), kept after the child leaves
    (``on_register`` false, with why and what names it) so the entry's history stays readable. Names and
    date of birth are the child's (tracking_children); the Act's other fields (home address, parents,
    providers) are in the history rows of the facts that brought them."""

    __tablename__ = "tracking_register_entries"

    child_id: str = Field(primary_key=True, max_length=36)
    la_code: str = Field(index=True, max_length=3)
    on_register: bool = Field(default=False, index=True)
    category: str | None = Field(default=None, max_length=40)
    education: str | None = Field(default=None, max_length=24)
    arrangement: str | None = Field(default=None, max_length=40)
    ehe_reason: str | None = Field(default=None, max_length=40)
    since: datetime | None = None
    changed_at: datetime | None = None
    left_at: datetime | None = None
    left_reason: str | None = Field(default=None, max_length=32)
    left_ref: str | None = Field(default=None, max_length=16)
    review_on: date | None = Field(default=None, index=True)
    handed_to: str | None = Field(default=None, max_length=3)
    school_urn: str | None = Field(default=None, max_length=6)
    updated_at: datetime = Field(default_factory=utcnow)


class TrackingRegisterHistory(SQLModel, table=True):
    """One row per fact that changed a child's register entry or brought the Act's information (s.436C):
    append-only, a redelivered fact adds nothing. ``details`` (JSON: the child's home address, parents,
    providers, a caseworker's note) is personal data: read only through the register API, LA-scoped and
    audited."""

    __tablename__ = "tracking_register_history"
    __table_args__ = (UniqueConstraint("child_id", "event_id", name="uq_tracking_register_history_event"),)

    id: int | None = Field(default=None, primary_key=True)
    child_id: str = Field(index=True, max_length=36)
    la_code: str = Field(index=True, max_length=3)
    event_id: str = Field(max_length=36)
    event_type: str = Field(max_length=40)
    occurred_at: datetime
    change: str = Field(max_length=16)  # added, updated, removed, details
    on_register: bool = False
    category: str | None = Field(default=None, max_length=40)
    education: str | None = Field(default=None, max_length=24)
    left_reason: str | None = Field(default=None, max_length=32)
    left_ref: str | None = Field(default=None, max_length=16)
    source_system: str | None = Field(default=None, max_length=64)
    details: str | None = Field(default=None, sa_column=Column(Text))
    recorded_at: datetime = Field(default_factory=utcnow)


class TrackingOutbox(OutboxBase, table=True):
    """Events a person's review decision publishes (merge, split, cross-LA confirmation), written in the
    decision's transaction and published by the API's outbox relay."""

    __tablename__ = "tracking_outbox"
