"""Apply the events of cme.child-events.v1 to one child's record (the faust table value): idempotent,
ordered by
event time, and returning everything to publish and project. No Kafka and no database here.

Ordering rule: the case state is always the fold of the child's facts in event-time order (ties by event id).
A fact newer than (or as new as) the newest applied is applied with one step. A late fact (older than the
newest
applied) is recorded in the timeline and the facts are folded again from the start; if the re-folded state
differs
from the current one, one transition (current -> re-folded) is published with the late fact as its cause;
otherwise the late fact only adds a timeline row. So a late fact is applied exactly where it changes the
outcome.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, Field

from services.tracking.facts import fact_from_inbound, timeline_codes
from services.tracking.register import RegisterStatus
from services.tracking.state_machine import Case, Fact, Step, corrected_ids, fold, step
from shared.case_ids import CASE_NAMESPACE, case_id_for, case_uuid_for
from shared.events.catalogue import decode_inbound
from shared.events.envelope import Envelope, Source
from shared.events.internal import (
    RESOLVED_STATES,
    CaseClockExpired,
    CaseHistory,
    CaseHistoryBase,
    CaseHistoryStep,
    CaseState,
    CaseTransition,
    CaseTransitionPayload,
    ChildFact,
    ChildMerged,
    ChildPurged,
    ChildSplit,
    DeadlineRef,
)
from shared.events.vocab import CaseOutcome, HandoverConfirmation

NAMESPACE = CASE_NAMESPACE
SYSTEM = "cme-tracking"


def derived_id(event_id: str, purpose: str) -> uuid.UUID:
    """Ids of the events we derive from another: the same input always derives the same id (idempotent)."""
    return uuid.uuid5(NAMESPACE, f"{purpose}:{event_id}")


class ChildRecord(BaseModel):
    """One child's hot state, held in the faust table keyed by child_id."""

    child_id: str
    la_code: str
    case: Case
    facts: list[Fact] = Field(default_factory=list)
    seen: list[str] = Field(default_factory=list)
    merged_into: str | None = None
    # Full inbound facts of a moved-out event are not kept; the handover is published when the move is
    # applied.

    @property
    def case_id(self) -> str:
        return case_id_for(self.child_id, self.la_code)


@dataclass
class TimelineRow:
    event_id: str
    event_type: str
    occurred_at: datetime
    verdict: str
    event_kind: str | None = None
    from_state: CaseState | None = None
    to_state: CaseState | None = None
    school_urn: str | None = None
    note: str | None = None  # human text only
    codes: dict[str, str] | None = None  # provision, exclusion and reason codes, for the reports


@dataclass
class Outcome:
    """What processing one event produced; the agent projects and publishes it, then saves ``record``."""

    record: ChildRecord
    duplicate: bool = False
    timeline: list[TimelineRow] = field(default_factory=list)
    transitions: list[CaseTransition] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(
        default_factory=list
    )  # (event_id, event kind) for a person to review
    handovers: list[Envelope] = field(
        default_factory=list
    )  # inbound facts for another LA (to the intake topic)
    forwards: list[tuple[str, Envelope]] = field(
        default_factory=list
    )  # (child_id key, event) to child-events
    # Retention ran out: delete the record from the table (a changelog tombstone); nothing to project or save.
    purged: bool = False
    # The Act's information a register fact brought (s.436C: home address, parents, providers; personal data,
    # for the register's rows only) and the system that sent it.
    register_details: dict[str, Any] | None = None
    source_system: str | None = None
    # The register status before this event (the record an Outcome starts from is the one before it).
    register_before: RegisterStatus = field(init=False)

    def __post_init__(self) -> None:
        self.register_before = self.record.case.register_status


@lru_cache(maxsize=256)
def _source(la_code: str) -> Source:
    """Tracking as the source of what it derives for an LA: validated once per LA (Source is frozen)."""
    return Source(system=SYSTEM, la_code=la_code)


def new_record(child_id: str, la_code: str) -> ChildRecord:
    return ChildRecord(child_id=child_id, la_code=la_code, case=Case(la_code=la_code))


def _transition(
    record: ChildRecord,
    before: Case,
    after: Case,
    cause: Envelope,
    fact_time: datetime,
    started: tuple[str, ...],
    stopped: tuple[str, ...],
) -> CaseTransition:
    assert after.state is not None
    to_state = after.state
    return CaseTransition(
        event_id=derived_id(f"{record.child_id}:{cause.event_id}:{to_state}", "transition"),
        occurred_at=fact_time,
        source=_source(record.la_code),
        correlation_id=cause.correlation_id or cause.event_id,
        payload=CaseTransitionPayload(
            child_id=uuid.UUID(record.child_id),
            case_id=case_uuid_for(record.child_id, record.la_code),
            la_code=record.la_code,
            from_state=before.state,
            to_state=to_state,
            cause_event_id=cause.event_id,
            cause_event_type=cause.event_type,
            cause_occurred_at=fact_time,
            reason=after.reason,
            vulnerabilities=after.vulnerabilities,
            social_care_status=after.social_care_status,
            has_social_worker=after.has_social_worker,
            deadlines_started=[DeadlineRef(name=d, clock_started_on=fact_time.date()) for d in started],
            deadlines_stopped=list(stopped),
            destination_la_code=after.destination_la_code,
            safeguarding_concern=after.safeguarding_concern,
            outcome=after.outcome,
            outcome_ref=after.outcome_ref,
        ),
    )


def _context_changed(before: Case, after: Case) -> bool:
    """An open case whose escalation-relevant context changed without a change of state."""
    if after.state is None or after.state in RESOLVED_STATES or after.state != before.state:
        return False
    return (
        after.vulnerabilities != before.vulnerabilities
        or after.social_care_status != before.social_care_status
        or after.has_social_worker != before.has_social_worker
        or after.safeguarding_concern != before.safeguarding_concern
        or after.reason != before.reason
    )


def _net_change(
    record: ChildRecord, before: Case, after: Case, cause: Envelope, when: datetime
) -> CaseTransition | None:
    """After a re-fold: one transition from the state we were in to the state the facts now give, if
    different."""
    if after.state == before.state or after.state is None:
        return None
    started = tuple(d for d in after.open_deadlines if d not in before.open_deadlines)
    stopped = tuple(d for d in before.open_deadlines if d not in after.open_deadlines)
    return _transition(record, before, after, cause, when, started, stopped)


def history_since(record: ChildRecord, facts: list[Fact], since: datetime) -> CaseHistory:
    """The case's history by event time from ``since`` on: the state just before it, then every transition
    the facts give in event-time order (each with the id tracking gives it when the facts arrive in that
    order). Escalation's clocks follow this, so they do not depend on the order facts arrived in."""
    by_id = {f.event_id: f for f in facts}
    _, steps = fold(record.la_code, facts)
    later = [s for s in steps if by_id[s.fact_id].occurred_at >= since]
    before = later[0].before if later else (steps[-1].after if steps else Case(la_code=record.la_code))
    base = None
    if before.state is not None:
        base = CaseHistoryBase(
            state=before.state,
            entered_at=before.cause_occurred_at or since,
            reason=before.reason,
            vulnerabilities=before.vulnerabilities,
            social_care_status=before.social_care_status,
            has_social_worker=before.has_social_worker,
            safeguarding_concern=before.safeguarding_concern,
        )
    history = CaseHistory(since=since, base=base)
    for s in later:
        if s.after.state is None or not (s.changes or _context_changed(s.before, s.after)):
            continue
        fact = by_id[s.fact_id]
        history.steps.append(
            CaseHistoryStep(
                event_id=derived_id(f"{record.child_id}:{fact.event_id}:{s.after.state}", "transition"),
                from_state=s.before.state,
                to_state=s.after.state,
                cause_event_id=uuid.UUID(fact.event_id),
                cause_event_type=fact.event_type,
                cause_occurred_at=fact.occurred_at,
                reason=s.after.reason,
                vulnerabilities=s.after.vulnerabilities,
                social_care_status=s.after.social_care_status,
                has_social_worker=s.after.has_social_worker,
                safeguarding_concern=s.after.safeguarding_concern,
                destination_la_code=s.after.destination_la_code,
                outcome=s.after.outcome,
                outcome_ref=s.after.outcome_ref,
            )
        )
    return history


def _refold_transition(
    record: ChildRecord, facts: list[Fact], before: Case, after: Case, cause: Envelope, fact: Fact
) -> CaseTransition | None:
    """After a re-fold: one transition from the state we were in to the state the facts now give, carrying
    the case's history by event time from the late fact (or the fact it corrects) on; published when the
    state or that history changed (a late registration between two episodes of one state changes no
    state, but ends the first episode and starts the second)."""
    corrected = next((f for f in record.facts if f.event_id == fact.attrs.get("corrects_event_id")), None)
    since = min(fact.occurred_at, corrected.occurred_at) if corrected else fact.occurred_at
    # Dated when the case entered its state by event time, never before the late fact: the clocks that
    # transition starts count from there (a transfer clock names the wait it counted by that time).
    entered = max(fact.occurred_at, after.cause_occurred_at or fact.occurred_at)
    transition = _net_change(record, before, after, cause, entered)
    history = history_since(record, facts, since)
    if transition is None:
        if after.state is None or history == history_since(record, record.facts, since):
            return None
        transition = _transition(record, before, after, cause, entered, (), ())
    return transition.model_copy(
        update={"payload": transition.payload.model_copy(update={"history": history})}
    )


def _handover(record: ChildRecord, inbound: Envelope, destination: str) -> Envelope:
    """The same fact, addressed to the destination LA as a move into its area, naming this LA as the origin:
    identity resolution there opens (or finds) its case, which tells this LA once it has the child."""
    data: dict[str, Any] = inbound.model_dump(mode="json")
    data["event_id"] = str(derived_id(f"{inbound.event_id}:{destination}", "handover"))
    data["source"] = {"system": SYSTEM, "la_code": destination}
    data["correlation_id"] = str(inbound.correlation_id or inbound.event_id)
    if inbound.event_type != "moved-out-of-area":
        # Left roll to another LA (for a named school there or not), or located there.
        school = (data["payload"].get("destination") or {}).get("school_urn")
        data["event_type"] = "moved-out-of-area"
        data["payload"] = {
            "child": data["payload"]["child"],
            "new_la_code": destination,
            "moved_on": inbound.occurred_at.date().isoformat(),
            **({"new_school_urn": school} if school else {}),
        }
    data["payload"]["from_la_code"] = record.la_code
    return decode_inbound(data)


def _confirmation(record: ChildRecord, after: Case, inbound: Envelope, origin: str) -> Envelope:
    """Tell the LA that handed the child over that this LA has the child (located, registered at one of its
    schools, or accepted by its caseworker): the origin's case closes with this LA (or the school) named."""
    if after.outcome == CaseOutcome.SCHOOL and after.outcome_ref:
        how, school = HandoverConfirmation.REGISTERED, after.outcome_ref
    elif inbound.event_type == "handover-confirmed":
        how, school = HandoverConfirmation.ACCEPTED, None
    else:
        how, school = HandoverConfirmation.LOCATED, None
    # When this LA had the child: the fact that put the case where it is. A move that arrives after the
    # registration it led to (a late fact) confirms as of the registration, as the facts in order would.
    confirmed_at = max(inbound.occurred_at, after.cause_occurred_at or inbound.occurred_at)
    data: dict[str, Any] = {
        "event_id": str(derived_id(f"{inbound.event_id}:{origin}", "handover-confirmed")),
        "event_type": "handover-confirmed",
        "occurred_at": confirmed_at.isoformat(),
        "source": {"system": SYSTEM, "la_code": origin},
        "correlation_id": str(inbound.correlation_id or inbound.event_id),
        "payload": {
            "child": inbound.payload.child.model_dump(mode="json", exclude_none=True),  # type: ignore[attr-defined]
            "origin_la_code": origin,
            "accepting_la_code": record.la_code,
            "how": how,
            "confirmed_on": confirmed_at.date().isoformat(),
            **({"school_urn": school} if school else {}),
        },
    }
    return decode_inbound(data)


def _names_child(event: Envelope) -> bool:
    """An inbound fact carries the child's identifiers (a confirmation to another LA is resolved by them);
    escalation's clock carries only ids. Its table rows never move a case to where a handover is confirmed."""
    return hasattr(event.payload, "child")


def _newly_confirmed(before: Case, after: Case) -> str | None:
    """The origin LA to tell, when this fact is the one that confirmed a handed-in child is here."""
    if after.handed_from and after.handover_confirmed and not before.handover_confirmed:
        return after.handed_from
    return None


def apply_child_fact(
    record: ChildRecord,
    event: ChildFact,
    deployment: frozenset[str] | None = None,
    inbound: Envelope | None = None,
    *,
    publishing: bool = True,
) -> Outcome:
    """``deployment``: the LAs this deployment serves (None: all); see ``facts.fact_from_inbound``.
    ``inbound``: the embedded fact, when the caller decoded it already (a replay); otherwise it is decoded
    here. Either way it is decoded and its payload dumped once per record, and both are passed down.
    ``publishing``: False for a caller that only projects (the rebuild): the in-order path then builds no
    transitions or handovers, whose events the live run has already published."""
    if inbound is None:
        inbound = decode_inbound(event.payload.fact)
    payload: dict[str, Any] = inbound.payload.model_dump(mode="json")
    fact = fact_from_inbound(inbound, deployment, payload)
    out = Outcome(
        record=record,
        register_details=register_details(inbound.event_type, payload),
        source_system=inbound.source.system,
    )
    if fact.event_id in record.seen:
        out.duplicate = True
        return out
    if record.merged_into is not None:
        # In flight when the merge happened: the fact belongs to the surviving child now.
        forwarded = event.model_copy(
            update={"payload": event.payload.model_copy(update={"child_id": uuid.UUID(record.merged_into)})}
        )
        out.forwards.append((record.merged_into, forwarded))
        out.timeline.append(
            TimelineRow(
                fact.event_id,
                fact.event_type,
                fact.occurred_at,
                "forwarded",
                note=f"forwarded to surviving child {record.merged_into}",
            )
        )
        out.record = record.model_copy(update={"seen": [*record.seen, fact.event_id]})
        return out
    return _apply_fact(record, fact, inbound, out, publishing)


def apply_clock_expired(record: ChildRecord, event: CaseClockExpired, *, publishing: bool = True) -> Outcome:
    """Escalation decided a clock that moves the case ran out (a transfer with no registration): a fact
    like any other, in event time (``occurred_at`` is the due time), folded with the child's facts."""
    p = event.payload
    fact = Fact(
        event_id=str(event.event_id),
        event_type=event.event_type,
        occurred_at=event.occurred_at,
        la_code=p.la_code,
        attrs={
            "state": p.state.value,
            "rule_id": p.rule_id,
            "clock_started_at": p.clock_started_at.isoformat(),
        },
    )
    out = Outcome(record=record)
    if fact.event_id in record.seen or not record.facts:
        # Seen, or a child with no facts here (purged at retention): nothing to record or project.
        out.duplicate = True
        return out
    if record.merged_into is not None:
        # The merged child's clocks stopped at the merge; the survivor's own clocks apply.
        out.timeline.append(
            TimelineRow(fact.event_id, fact.event_type, fact.occurred_at, "stay", note="child merged")
        )
        out.record = record.model_copy(update={"seen": [*record.seen, fact.event_id]})
        return out
    return _apply_fact(record, fact, event, out, publishing)


def _in_order_outputs(
    record: ChildRecord, before: Case, after: Case, s: Step, fact: Fact, inbound: Envelope, out: Outcome
) -> None:
    """What an in-order fact's step publishes: its transition, and the handovers it sends."""
    if s.changes:
        out.transitions.append(
            _transition(
                record, before, after, inbound, fact.occurred_at, s.deadlines_started, s.deadlines_stopped
            )
        )
    elif _context_changed(before, after):
        # Same state, new facts about the child (a social worker allocated while missing): escalation
        # matches rules on these, so it hears of them as a transition to the state the case is in.
        out.transitions.append(_transition(record, before, after, inbound, fact.occurred_at, (), ()))
    if s.handover_to:
        out.handovers.append(_handover(record, inbound, s.handover_to))
    if s.confirms_handover_to and _names_child(inbound):
        out.handovers.append(_confirmation(record, after, inbound, s.confirms_handover_to))


def _apply_fact(
    record: ChildRecord, fact: Fact, inbound: Envelope, out: Outcome, publishing: bool = True
) -> Outcome:
    """One fact (an inbound one, or escalation's clock) applied by the ordering rule; ``inbound`` is the event
    it came in (the cause of any transition). Not ``publishing``: an in-order fact's transitions and handovers
    are not built (a late or correcting fact's are: its verdict depends on its transition)."""
    before = record.case
    late = before.last_occurred_at is not None and fact.occurred_at < before.last_occurred_at
    facts = [*record.facts, fact]
    school = fact.attrs.get("school_urn")
    # A correction replaces the fact it names; a fact already corrected (it arrives after its correction)
    # changes nothing. Either way the facts are folded again, the corrected one left out.
    correction = fact.attrs.get("corrects_event_id") in {f.event_id for f in record.facts}
    superseded = fact.event_id in corrected_ids(record.facts)
    if not (late or correction or superseded):
        s = step(before, fact)
        after = s.after
        row = TimelineRow(
            fact.event_id,
            fact.event_type,
            fact.occurred_at,
            s.rule.verdict,
            s.kind,
            before.state,
            after.state,
            school,
            codes=timeline_codes(fact),
        )
        if publishing:
            _in_order_outputs(record, before, after, s, fact, inbound, out)
        if s.flagged:
            out.refused.append((fact.event_id, s.kind))
    elif superseded:
        after = before
        row = TimelineRow(
            fact.event_id,
            fact.event_type,
            fact.occurred_at,
            "superseded",
            None,
            before.state,
            after.state,
            school,
            note="corrected before it arrived: its correction is applied in its place",
        )
    else:
        after, steps = fold(record.la_code, facts)
        own = next(x for x in steps if x.fact_id == fact.event_id)
        transition = _refold_transition(record, facts, before, after, inbound, fact)
        kind_of_change = "correction" if correction else "late"
        # A same-state transition only carries the history to escalation: the fact changed no state.
        moved = transition is not None and after.state != before.state
        verdict = f"{kind_of_change}-applied" if moved else kind_of_change
        why = (
            f"corrects {fact.attrs['corrects_event_id']}, folded in its place: it was {own.rule.verdict}"
            if correction
            else f"late fact, in event-time order it was {own.rule.verdict}"
        )
        row = TimelineRow(
            fact.event_id,
            fact.event_type,
            fact.occurred_at,
            verdict,
            own.kind,
            before.state,
            after.state,
            school,
            note=why,
            codes=timeline_codes(fact),
        )
        if transition is not None:
            out.transitions.append(transition)
            if moved and own.handover_to and after.destination_la_code == own.handover_to:
                out.handovers.append(_handover(record, inbound, own.handover_to))
        origin = _newly_confirmed(before, after)
        if origin and _names_child(inbound):
            out.handovers.append(_confirmation(record, after, inbound, origin))
        elif origin:
            after = after.model_copy(update={"handover_confirmed": False})  # the next fact tells the origin
        if own.flagged:
            out.refused.append((fact.event_id, own.kind))
    out.timeline.append(row)
    out.record = record.model_copy(
        update={"case": after, "facts": facts, "seen": [*record.seen, fact.event_id]}
    )
    return out


# The events that carry the Act's information about a child on the register (s.436C-436E).
_REGISTER_DETAIL_FIELDS = ("parents", "providers", "provider", "ceased", "note")


def _without_none(value: Any) -> Any:
    """``value`` with every None field left out, at every depth (as pydantic's ``exclude_none``)."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def register_details(event_type: str, payload: dict[str, Any]) -> dict[str, Any] | None:
    """What a register fact says of the child's home, parents and providers (s.436C(1)); None for others.
    ``payload``: the fact's payload as JSON (``model_dump(mode="json")``)."""
    if event_type not in (
        "not-in-school-notice",
        "education-provider-return",
        "register-entry-recorded",
    ):
        return None
    payload = _without_none(payload)
    child = payload["child"]
    details = {k: payload[k] for k in _REGISTER_DETAIL_FIELDS if payload.get(k) not in (None, [])}
    details.update({k: child[k] for k in ("address", "postcode") if child.get(k)})
    return details


def apply_merge(record: ChildRecord, event: ChildMerged) -> Outcome:
    """A person linked two children. At the merged child: hand its facts to the survivor. At the survivor:
    take
    them, and re-fold, so the case reflects every fact of the one child."""
    p = event.payload
    out = Outcome(record=record)
    event_id = str(event.event_id)
    if event_id in record.seen:
        out.duplicate = True
        return out
    seen = [*record.seen, event_id]
    if str(p.merged_child_id) == record.child_id:
        survivor = str(p.surviving_child_id)
        forward = ChildMerged(
            event_id=derived_id(event_id, "merge-to-survivor"),
            occurred_at=event.occurred_at,
            source=Source(system=SYSTEM, la_code=record.la_code),
            correlation_id=event.event_id,
            payload=p.model_copy(update={"facts": [f.model_dump(mode="json") for f in record.facts]}),
        )
        out.forwards.append((survivor, forward))
        out.timeline.append(
            TimelineRow(
                event_id,
                event.event_type,
                event.occurred_at,
                "merged",
                None,
                record.case.state,
                None,
                note=f"merged into {survivor}",
            )
        )
        out.record = record.model_copy(update={"merged_into": survivor, "seen": seen})
        return out
    incoming = [Fact.model_validate(f) for f in p.facts]
    new_facts = [f for f in incoming if f.event_id not in record.seen]
    facts = [*record.facts, *new_facts]
    before = record.case
    after, _ = fold(record.la_code, facts)
    transition = _net_change(record, before, after, event, event.occurred_at)
    if transition is not None:
        out.transitions.append(transition)
    out.timeline.append(
        TimelineRow(
            event_id,
            event.event_type,
            event.occurred_at,
            "merged",
            None,
            before.state,
            after.state,
            note=f"took {len(new_facts)} facts of {p.merged_child_id}",
        )
    )
    for f in new_facts:
        out.timeline.append(
            TimelineRow(
                f.event_id, f.event_type, f.occurred_at, "merged-in", note=f"from {p.merged_child_id}"
            )
        )
    out.record = record.model_copy(
        update={"case": after, "facts": facts, "seen": [*seen, *(f.event_id for f in new_facts)]}
    )
    return out


def apply_split(record: ChildRecord, event: ChildSplit) -> Outcome:
    """Undo of a merge. At the survivor: give the named facts back and re-fold. At the restored child: take
    them,
    drop the merge, and re-fold."""
    p = event.payload
    out = Outcome(record=record)
    event_id = str(event.event_id)
    if event_id in record.seen:
        out.duplicate = True
        return out
    seen = [*record.seen, event_id]
    before = record.case
    moved = {str(e) for e in p.moved_event_ids}
    if str(p.child_id) == record.child_id:
        keep = [f for f in record.facts if f.event_id not in moved]
        give = [f for f in record.facts if f.event_id in moved]
        after, _ = fold(record.la_code, keep)
        forward = ChildSplit(
            event_id=derived_id(event_id, "split-to-restored"),
            occurred_at=event.occurred_at,
            source=Source(system=SYSTEM, la_code=record.la_code),
            correlation_id=event.event_id,
            payload=p.model_copy(update={"facts": [f.model_dump(mode="json") for f in give]}),
        )
        out.forwards.append((str(p.new_child_id), forward))
        facts = keep
        transition = _net_change(record, before, after, event, event.occurred_at)
    else:
        facts = [Fact.model_validate(f) for f in p.facts]
        after, _ = fold(record.la_code, facts)
        seen += [f.event_id for f in facts if f.event_id not in seen]
        # The restored child's case opens again as its own: announce it whole (from no case), even in the
        # state it had before the merge, so escalation restarts the clocks it stopped at the merge.
        transition = (
            _transition(
                record,
                Case(la_code=record.la_code),
                after,
                event,
                event.occurred_at,
                tuple(after.open_deadlines),
                (),
            )
            if after.state is not None
            else None
        )
    if transition is not None:
        out.transitions.append(transition)
    out.timeline.append(
        TimelineRow(
            event_id,
            event.event_type,
            event.occurred_at,
            "split",
            None,
            before.state,
            after.state,
            note=f"{len(moved)} facts moved",
        )
    )
    out.record = record.model_copy(update={"case": after, "facts": facts, "seen": seen, "merged_into": None})
    return out


def apply_purge(record: ChildRecord, event: ChildPurged) -> Outcome:
    """``cme purge`` deleted the child's rows from the case store; the working record goes too. A repeat finds
    no record (the agent starts from an empty one) and deletes nothing more."""
    if str(event.payload.child_id) != record.child_id:
        raise ValueError("a purge names the child it is keyed by")
    return Outcome(record=record, purged=True)
