"""What tracking's read API takes and returns: the request bodies and the views of cases, children and
reports (pydantic models, no tables; the tables are in ``models.py``)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, Field, WithJsonSchema

from shared.events.internal import CaseState
from shared.events.vocab import Vulnerability

# Why a person reads a child's record: required on every audited read.
Reason = Annotated[str, Field(min_length=3, max_length=500, description="Why the record is being read")]


class CaseOut(BaseModel):
    case_id: str
    child_id: str
    la_code: str
    state: str | None
    reason: str | None
    cause_event_id: str | None
    cause_event_type: str | None
    cause_occurred_at: datetime | None
    vulnerabilities: list[str]
    social_care_status: str
    has_social_worker: bool
    safeguarding_concern: bool
    destination_la_code: str | None
    outcome: str | None = None  # where a closed case's child is educated (CaseOutcome), and its reference
    outcome_ref: str | None = None
    open_deadlines: list[str]
    merged_into: str | None


class TimelineOut(BaseModel):
    event_id: str
    event_type: str
    event_kind: str | None
    occurred_at: datetime
    verdict: str
    from_state: str | None
    to_state: str | None
    school_urn: str | None
    note: str | None  # human text
    codes: dict[str, str] | None = None  # provision, exclusion and stated-reason codes of the fact


class IdentifierOut(BaseModel):
    kind: str  # upn, uln, nhs_number, la_child_id
    value: str


class CrossLAOut(BaseModel):
    """One side of a cross-LA match, as this LA may see it: never the other LA's child, case or timeline."""

    link_id: str
    review_id: str  # this LA's review item (confirm or reject there)
    side: str  # possible_location (this LA seeks the child), sought_by (another LA seeks this child)
    other_la_code: str
    other_la_contact: str
    fact_type: str | None  # possible_location: the other LA's fact that named the child, and its date
    fact_on: date | None
    sought_state: str | None  # sought_by: the other LA's open state and since when
    missing_since: date | None
    match: str  # exact, scored
    identifier_kind: str | None
    score: float | None
    fields_agreed: list[str]
    status: str  # open, confirmed, rejected
    decided_la_code: str | None


class ChildOut(BaseModel):
    child_id: str
    forename: str | None
    surname: str | None
    date_of_birth: date | None
    sex: str | None = None
    # The child's strong identifiers: what a fact recorded from the web names the child by, so it resolves to
    # this child exactly (identity resolution, as for any source).
    identifiers: list[IdentifierOut] = []
    case: CaseOut | None
    timeline: list[TimelineOut]
    # Cross-LA matches of this child (docs/TRACKING.md "Found anywhere"), this LA's side only.
    cross_la: list[CrossLAOut] = []


class SpellOut(BaseModel):
    start: datetime
    state: str
    reason: str | None
    event_kind: str | None


class DetailOut(BaseModel):
    occurred_at: datetime
    event_kind: str | None
    codes: dict[str, str]


class HistoryOut(BaseModel):
    """One child's case over event time, for the LA's reports."""

    child_id: str
    case_id: str
    upn: str | None
    date_of_birth: date | None
    sex: str | None
    vulnerabilities: list[str]
    state: str | None
    spells: list[SpellOut]
    details: list[DetailOut]


# --- the reports' counts as of a day, from tracking_spells in SQL (reports.py) ---------------------------


class StateCount(BaseModel):
    state: str
    reason: str | None
    count: int


class SinceCount(BaseModel):
    since: date | None  # the day the child's unbroken missing-education run began (UTC)
    count: int


class MonthCount(BaseModel):
    on: date
    cme: int
    whereabouts_unknown: int
    new_cme: int  # became missing education on or after the first of the month, still missing on ``on``


class ReportCounts(BaseModel):
    """The LA's cases on ``on`` by state and reason, the missing-education cases by the day they went missing
    and by vulnerable group, and the month-end counts of the ``months`` up to ``on``. No child is named."""

    on: date
    by_state: list[StateCount]
    cme_since: list[SinceCount]
    cme_by_vulnerability: dict[str, int]
    months: list[MonthCount]


class ReturnGroup(BaseModel):
    sex: str | None
    date_of_birth: date | None
    reason: str | None  # missing-education reason; for home education the parent's stated reason
    since: date | None  # missing education only
    count: int


class ReturnCounts(BaseModel):
    """The DfE termly return's counts on census day ``on``, grouped by what the return breaks them down by
    (a date of birth gives the year group): children missing education and electively home educated, and
    those in that state at any moment of a window before (12 months up to ``on``; ``ehe_from``-``ehe_to``)."""

    on: date
    cme: list[ReturnGroup]
    cme_in_previous_year: int
    ehe: list[ReturnGroup]
    ehe_in_window: int


# A child who on the day is missing education or may be in part-time provision: the spell then, and the
# provision and exclusion facts up to then (the web decides part time and exclusion). Positional, as
# ``NOT_IN_FTE_COLUMNS`` names them: thousands of rows validate and travel several times faster as arrays.
NOT_IN_FTE_COLUMNS = (
    "child_id", "upn", "date_of_birth", "spell_start", "state", "reason",
    "facts: occurred_at, event_kind, codes",
)  # fmt: skip
NotInFTEFact = tuple[datetime, str | None, dict[str, str]]
NotInFTERow = tuple[str, str | None, date | None, datetime, str, str | None, list[NotInFTEFact]]


# Documented as plain arrays of 7: a tuple's schema (prefixItems) is valid OpenAPI 3.1, but schemathesis and
# many client generators read it in the 3.0 way (``items`` as a list) and reject the whole document.
NOT_IN_FTE_ROW_SCHEMA = {
    "type": "array",
    "minItems": len(NOT_IN_FTE_COLUMNS),
    "maxItems": len(NOT_IN_FTE_COLUMNS),
    "items": {},
    "description": "One child, positional: " + "; ".join(NOT_IN_FTE_COLUMNS),
}


class NotInFTEPage(BaseModel):
    columns: tuple[str, ...] = NOT_IN_FTE_COLUMNS
    rows: list[Annotated[NotInFTERow, WithJsonSchema(NOT_IN_FTE_ROW_SCHEMA)]]
    next_after: str | None  # the ``after`` of the next page; None on the last


class CaseQuery(BaseModel):
    """A page of the LA's cases for a work queue, filtered; ``total`` counts every case the filters match."""

    reason: Reason
    case_ids: list[uuid.UUID] | None = Field(default=None, max_length=50_000, description="Only these cases")
    exclude_case_ids: list[uuid.UUID] | None = Field(default=None, max_length=50_000)
    states: list[CaseState] | None = None
    open_only: bool = Field(default=False, description="Leave out cases in a resolved state")
    reason_code: str | None = Field(default=None, max_length=40)
    vulnerability: Vulnerability | None = None
    school_urn: str | None = Field(default=None, pattern=r"^[0-9]{6}$", description="A fact from this school")
    sort: Annotated[str, Field(pattern="^(oldest|newest|surname)$")] = "oldest"
    offset: int = Field(default=0, ge=0, le=10_000_000)  # far beyond any LA's cases; a database integer
    limit: int = Field(default=50, ge=1, le=500)


class CaseSummaryOut(BaseModel):
    case: CaseOut
    forename: str | None
    surname: str | None
    date_of_birth: date | None
    school_urn: str | None  # the school of the child's latest fact that named one
    # Since when the case has been open (event time: the start of its current run of open states) and the
    # school of the latest fact, by then, that named one: facts that do not move with later arrivals, which
    # the web's allocation policy decides on.
    opened_at: datetime | None = None
    opening_school_urn: str | None = None
    spells: list[SpellOut]


class CasePage(BaseModel):
    total: int
    items: list[CaseSummaryOut]


class SearchIn(BaseModel):
    reason: Reason
    upn: str | None = Field(default=None, max_length=13)  # a UPN is 13 characters
    surname: str | None = Field(default=None, max_length=100)
    date_of_birth: date | None = None


class Decision(BaseModel):
    # link / not_link: a possible duplicate in the LA; confirm / reject: a cross-LA match (cross_la_match).
    decision: Annotated[str, Field(pattern="^(link|not_link|confirm|reject)$")]
    reason: Reason


class Undo(BaseModel):
    reason: Reason


class CrossLACounts(BaseModel):
    open: int = 0
    confirmed: int = 0
    rejected: int = 0


class CrossLAReport(BaseModel):
    """Children found across LAs, from this LA's side, and how long its children were missing before."""

    la_code: str
    matching_enabled: bool  # off: this LA's children are neither sought elsewhere nor found for others
    found_elsewhere: CrossLACounts  # this LA's sought children named by a fact in another LA
    sought_by_others: CrossLACounts  # this LA's records of children another LA seeks
    # Confirmed found elsewhere: days from the start of the missing spell to the other LA's fact (event time).
    days_missing_to_found: list[int]
    median_days_missing_to_found: float | None
