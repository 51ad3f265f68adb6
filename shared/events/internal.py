"""Events the services publish to each other after intake (child facts, transitions, escalations, acks)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, StrictBool, model_validator

from shared.events.envelope import DestinationLACode, Envelope, LACode, Source, StrictModel, utcnow
from shared.events.vocab import CaseOutcome, MissingReason, ResolutionReason, SocialCareStatus, Vulnerability


class CaseState(StrEnum):
    ON_ROLL_AT_RISK = "on_roll_at_risk"
    MISSING_EDUCATION = "missing_education"
    WHEREABOUTS_UNKNOWN = "whereabouts_unknown"
    AWAITING_PROVISION = "awaiting_provision"
    PLACE_OFFERED = "place_offered"
    # Left for a named school (or said to be in education somewhere): open until a registration confirms it.
    TRANSFER_PENDING = "transfer_pending"
    # Handed to another LA on this deployment: open here until that LA confirms it has the child.
    HANDED_OVER = "handed_over"
    # Gone to an LA outside this deployment: open until a person records that LA's confirmation.
    AWAITING_LA_CONFIRMATION = "awaiting_la_confirmation"
    # Part-time or reduced provision: not the full-time education the law requires; reviewed.
    PART_TIME_PROVISION = "part_time_provision"
    IN_EDUCATION = "in_education"
    ELECTIVELY_HOME_EDUCATED = "electively_home_educated"
    LEFT_AREA = "left_area"
    MOVED_ABROAD = "moved_abroad"
    OUT_OF_SCOPE = "out_of_scope"  # died, detained, over compulsory school age (a person recorded it)


# The states a report counts as children missing education (CME). A child who left for another LA counts as
# missing until that LA confirms it has the child (NCB 2014 counts "left the LA" as CME until confirmed), so
# handed_over and awaiting_la_confirmation are CME too. Tracking's spell rows and the web's reports share it.
CME_STATES: tuple[str, ...] = (
    "missing_education",
    "whereabouts_unknown",
    "awaiting_provision",
    "place_offered",
    "handed_over",
    "awaiting_la_confirmation",
)

# The days a report may be asked for (tracking's report routes refuse others with 422, the web's pages too):
# every case falls inside, and twelve month-ends before the first are still valid dates.
REPORT_FIRST_DAY, REPORT_LAST_DAY = date(1990, 1, 1), date(2199, 12, 31)

# States in which the LA's work on the child is done: each is entered only with an outcome naming where the
# child's education is (CaseTransitionPayload.outcome). Home education stays monitored (its review dates).
RESOLVED_STATES = frozenset(
    {
        CaseState.IN_EDUCATION,
        CaseState.ELECTIVELY_HOME_EDUCATED,
        CaseState.LEFT_AREA,
        CaseState.MOVED_ABROAD,
        CaseState.OUT_OF_SCOPE,
    }
)


class MatchKind(StrEnum):
    EXACT = "exact"  # a strong identifier (UPN, ULN, NHS number, LA id) matched
    SCORED = "scored"  # names, date of birth, sex and postcode scored above the link threshold
    NEW = "new"  # no candidate: a new child
    REVIEW = "review"  # grey zone: linked to a new child, with a possible-duplicate review item


class ChildFactPayload(StrictModel):
    """An inbound fact after identity resolution, re-keyed by the resolved child."""

    child_id: uuid.UUID
    la_code: LACode
    match: MatchKind
    match_score: Annotated[float | None, Field(ge=0, le=1)] = None
    fact: dict[str, object] = Field(description="The inbound event as received (an InboundEvent as JSON)")


class ChildFact(Envelope):
    event_type: Literal["child-fact"] = "child-fact"
    payload: ChildFactPayload


class ChildMergedPayload(StrictModel):
    surviving_child_id: uuid.UUID
    merged_child_id: uuid.UUID
    la_code: LACode
    decided_by: str
    review_item_id: uuid.UUID | None = None
    # Set by tracking when it forwards the merge to the surviving child: the merged child's facts to re-apply.
    facts: list[dict[str, object]] = Field(default_factory=list)


class ChildMerged(Envelope):
    event_type: Literal["child-merged"] = "child-merged"
    payload: ChildMergedPayload


class ChildSplitPayload(StrictModel):
    """Undo of a merge: the facts named move back to their own child."""

    child_id: uuid.UUID
    new_child_id: uuid.UUID
    la_code: LACode
    moved_event_ids: list[uuid.UUID]
    decided_by: str
    # Set by tracking when it forwards the split to the restored child: the facts it takes back.
    facts: list[dict[str, object]] = Field(default_factory=list)


class ChildSplit(Envelope):
    event_type: Literal["child-split"] = "child-split"
    payload: ChildSplitPayload


class ChildPurgedPayload(StrictModel):
    """Retention: the child's records are deleted from the case store; tracking deletes its working record too
    (a tombstone on the table's compacted changelog), so no copy of the child's facts outlives the period."""

    child_id: uuid.UUID
    la_code: LACode
    reason: Literal["retention"] = "retention"


class ChildPurged(Envelope):
    event_type: Literal["child-purged"] = "child-purged"
    payload: ChildPurgedPayload


class CaseClockExpiredPayload(StrictModel):
    """Escalation's word that a clock which moves the case ran out, decided on event time: the case was still
    in ``state`` at ``due_at`` as far as every fact up to then said. Tracking folds it like any fact (its
    ``occurred_at`` is ``due_at``): it moves the case only if the case is still in the state it has been in
    since ``clock_started_at`` (a registration dated before the due time wins, even if it arrives later)."""

    child_id: uuid.UUID
    case_id: uuid.UUID
    la_code: LACode
    rule_id: str = Field(max_length=64)
    state: CaseState  # the state the clock watched (today only transfer_pending)
    clock_started_at: AwareDatetime  # the event time the clock counted from (the case entered the state)
    due_at: AwareDatetime


class CaseClockExpired(Envelope):
    event_type: Literal["case-clock-expired"] = "case-clock-expired"
    payload: CaseClockExpiredPayload


class DeadlineRef(StrictModel):
    """A statutory clock a transition starts; escalation turns it into a due time with the LA's rules."""

    name: str
    clock_started_on: date
    due_at: AwareDatetime | None = None


class CaseHistoryBase(StrictModel):
    """The case as its facts left it just before ``CaseHistory.since``: the state, when it entered it by event
    time, and the context rules match on."""

    state: CaseState
    entered_at: AwareDatetime
    reason: MissingReason | None = None
    vulnerabilities: list[Vulnerability] = Field(default_factory=list)
    social_care_status: SocialCareStatus = SocialCareStatus.NONE
    has_social_worker: StrictBool = False
    safeguarding_concern: StrictBool = False


class CaseHistoryStep(StrictModel):
    """One transition the case's facts give in event-time order: the one tracking would have published
    (``event_id`` included) had the facts arrived in that order."""

    event_id: uuid.UUID
    from_state: CaseState | None
    to_state: CaseState
    cause_event_id: uuid.UUID
    cause_event_type: str
    cause_occurred_at: AwareDatetime
    reason: MissingReason | None = None
    vulnerabilities: list[Vulnerability] = Field(default_factory=list)
    social_care_status: SocialCareStatus = SocialCareStatus.NONE
    has_social_worker: StrictBool = False
    safeguarding_concern: StrictBool = False
    destination_la_code: DestinationLACode | None = None  # may be Welsh (a person records its confirmation)
    outcome: CaseOutcome | None = None
    outcome_ref: str | None = None


class CaseHistory(StrictModel):
    """A case's event-time history from ``since`` (a late fact's or a correction's time) on, as the re-fold
    of its facts gives it: escalation's clocks follow it, not the order the facts arrived in
    (docs/ESCALATION.md)."""

    since: AwareDatetime
    base: CaseHistoryBase | None = Field(description="The case just before since; None: no case yet")
    steps: list[CaseHistoryStep] = Field(default_factory=list)


class CaseTransitionPayload(StrictModel):
    child_id: uuid.UUID
    case_id: uuid.UUID
    la_code: LACode
    from_state: CaseState | None
    to_state: CaseState
    cause_event_id: uuid.UUID
    cause_event_type: str
    cause_occurred_at: AwareDatetime
    reason: MissingReason | None = None
    vulnerabilities: list[Vulnerability] = Field(default_factory=list)
    social_care_status: SocialCareStatus = SocialCareStatus.NONE
    has_social_worker: StrictBool = False
    deadlines_started: list[DeadlineRef] = Field(default_factory=list)
    deadlines_stopped: list[str] = Field(default_factory=list)
    flagged_for_review: StrictBool = False
    # Where the child went: an English LA handed the child, or a Welsh one a person must hear from.
    destination_la_code: DestinationLACode | None = None
    safeguarding_concern: StrictBool = False  # a referrer raised a safeguarding concern about the child
    # Set when to_state is resolved: where the child's education is confirmed, and what names it (a URN, an
    # LA code, a country, a provision type or a reg 9(1) letter).
    outcome: CaseOutcome | None = None
    outcome_ref: str | None = None
    # A re-fold (a late fact, a correction): the case's history by event time from that fact on, which
    # escalation reconciles its clocks against. None: an in-order step (this transition is the history).
    history: CaseHistory | None = None
    # Folded ahead on the urgent lane from the child's record as it stood, before the facts queued ahead of
    # its cause on child-events were folded: the same transition (same event id) follows from the fold in
    # order, which is the one that counts where the two differ (docs/TRACKING.md, "The urgent lane through
    # the case fold").
    provisional: StrictBool = False


class CaseTransition(Envelope):
    event_type: Literal["case-transition"] = "case-transition"
    payload: CaseTransitionPayload


class TrackingProgressPayload(StrictModel):
    """How far tracking has folded one partition of cme.child-events.v1: every record on it before
    ``next_offset``, and every fact up to ``folded_to`` (event time), is applied, and the transitions they
    caused are on the same partition of cme.case-transitions.v1, before this record. Escalation adds "caught
    up at t" itself: ``next_offset`` is at the partition's end asked for after t (docs/ESCALATION.md)."""

    partition: Annotated[int, Field(ge=0)]
    next_offset: Annotated[int, Field(ge=0)]
    folded_to: AwareDatetime | None = Field(
        default=None, description="None: no event time claimed (a worker that has read nothing yet)"
    )


class TrackingProgress(Envelope):
    """Tracking's progress mark on the transitions topic (no child data): escalation's horizon waits on it."""

    event_type: Literal["tracking-progress"] = "tracking-progress"
    payload: TrackingProgressPayload


PROGRESS_NAMESPACE = uuid.UUID("0c7d3e52-8f0a-4c1e-9b7e-3a2f6d4b1e90")


def tracking_progress(partition: int, next_offset: int, folded_to: datetime | None) -> TrackingProgress:
    """The mark for ``partition``: the same mark always has the same event id (a repeat is harmless). Its
    ``occurred_at`` is when it was made: the event time it claims is ``folded_to``."""
    at = folded_to.isoformat() if folded_to is not None else "-"
    return TrackingProgress(
        event_id=uuid.uuid5(PROGRESS_NAMESPACE, f"{partition}:{next_offset}:{at}"),
        occurred_at=utcnow(),
        source=Source(system="cme-tracking"),
        payload=TrackingProgressPayload(partition=partition, next_offset=next_offset, folded_to=folded_to),
    )


class LadderLevel(StrEnum):
    CASEWORKER = "caseworker"
    SENIOR_CME_OFFICER = "senior_cme_officer"
    CHILDRENS_SOCIAL_CARE = "childrens_social_care"
    POLICE = "police"


class EscalationAction(StrEnum):
    RAISED = "raised"
    STEPPED_UP = "stepped_up"
    CANCELLED = "cancelled"


class EscalationPayload(StrictModel):
    escalation_id: uuid.UUID
    child_id: uuid.UUID
    case_id: uuid.UUID
    la_code: LACode
    rule_id: str
    rule_fingerprint: str
    action: EscalationAction
    level: LadderLevel
    step_index: Annotated[int, Field(ge=0)]
    case_state: CaseState | None = Field(
        description="The case's state as tracking's transitions give it (a state rule: the state it watches);"
        " None for an event rule's alert about a child with no case transition read (tracking opens no case"
        " for a sickness notice, a fair access referral or a review date, and a fact can be read before"
        " the transition it causes)"
    )
    reason_code: str = Field(
        description="Why, as a code (no personal data): the rule's id or a cancel reason"
    )
    next_step_due_at: AwareDatetime | None = None
    late: bool = Field(
        default=False,
        description="Sent from a backlog: the step fell due (occurred_at) more than the live window before"
        " escalation could decide it; the episode was still open when it was sent",
    )


class Escalation(Envelope):
    event_type: Literal["escalation"] = "escalation"
    payload: EscalationPayload


class AckAction(StrEnum):
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class AlertAckPayload(StrictModel):
    escalation_id: uuid.UUID
    child_id: uuid.UUID
    la_code: LACode
    step_index: Annotated[int, Field(ge=0)]
    action: AckAction
    by_user: Annotated[str, Field(min_length=1, max_length=128)]
    # Required to resolve (a fixed list, audited): resolving ends the alerts, never the case.
    resolution_reason: ResolutionReason | None = None

    @model_validator(mode="after")
    def _resolve_needs_reason(self) -> AlertAckPayload:
        if self.action == AckAction.RESOLVED and self.resolution_reason is None:
            raise ValueError("resolving an escalation needs resolution_reason")
        if self.action == AckAction.ACKNOWLEDGED and self.resolution_reason is not None:
            raise ValueError("resolution_reason is only for action resolved")
        return self


class AlertAck(Envelope):
    event_type: Literal["alert-ack"] = "alert-ack"
    payload: AlertAckPayload


class DeadLetterPayload(StrictModel):
    original_topic: str
    partition: int
    offset: int
    key: str | None
    value_base64: str
    error_type: str
    error: Annotated[str, Field(max_length=2000)]
    service: str
    attempts: int = 1


class DeadLetter(Envelope):
    event_type: Literal["dead-letter"] = "dead-letter"
    payload: DeadLetterPayload


INTERNAL_EVENT_CLASSES: tuple[type[Envelope], ...] = (
    ChildFact,
    ChildMerged,
    ChildSplit,
    ChildPurged,
    CaseClockExpired,
    CaseTransition,
    TrackingProgress,
    Escalation,
    AlertAck,
    DeadLetter,
)
