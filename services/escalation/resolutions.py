"""The resolutions of a case by event time (``EscalationCase.resolutions``): when tracking's transitions
resolved it, to which state, caused by which fact. Escalation reads a child's facts and its case transitions
on two topics, in whatever interleaving the broker gives; an event rule's fact read after the transition that
resolved the case later must end where that resolution would have ended it had the fact been read first
(``child_facts.handle_child_fact``), so both orders give the same deadlines, steps and alerts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from services.escalation.models import EscalationCase
from services.escalation.unit_of_work import as_utc
from shared.events.internal import RESOLVED_STATES, CaseState


@dataclass(frozen=True)
class Resolution:
    at: datetime  # event time
    state: str
    cause_event_id: str | None  # the fact that resolved the case (None: recorded before this was kept)


def resolutions(case: EscalationCase) -> list[Resolution]:
    found = [
        Resolution(as_utc(datetime.fromisoformat(at)), state, cause)
        for at, state, cause in json.loads(case.resolutions or "[]")
    ]
    if not found and case.state in {s.value for s in RESOLVED_STATES}:
        # A case resolved before resolutions were kept: its newest state stands in.
        found = [Resolution(as_utc(case.state_since), case.state, None)]
    return found


def _store(case: EscalationCase, found: list[Resolution]) -> None:
    rows = sorted((r.at.isoformat(), r.state, r.cause_event_id) for r in found)
    case.resolutions = json.dumps(rows) if rows else ""


def record_resolution(case: EscalationCase, at: datetime, state: CaseState, cause_event_id: str) -> None:
    found = [r for r in resolutions(case) if r.cause_event_id is not None]
    entry = Resolution(as_utc(at), state.value, cause_event_id)
    if entry not in found:
        found.append(entry)
    _store(case, found)


def forget_from(case: EscalationCase, since: datetime) -> None:
    """A re-fold rewinds the case to ``since``: the resolutions from then on come again from its history."""
    _store(case, [r for r in resolutions(case) if r.at < as_utc(since) and r.cause_event_id is not None])


def first_resolution(case: EscalationCase | None, at: datetime, *, spare: str) -> Resolution | None:
    """The first resolution at or after ``at`` (event time), other than one caused by fact ``spare``: a
    resolution never ends what its own fact starts (a notice of home education for a child under child
    protection alerts social care, whatever tracking makes of the case)."""
    if case is None:
        return None
    later = [r for r in resolutions(case) if r.at >= as_utc(at) and r.cause_event_id != spare]
    return min(later, key=lambda r: r.at) if later else None
