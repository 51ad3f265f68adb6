"""A case's states over event time, replayed from its timeline: what reports "as of a date" are built on.

The case row holds only the current state. The timeline keeps every fact with the event kind it was
classified as, so replaying the kinds through the transition table in event-time order (ties by event id)
gives the state the case was in at any moment, late facts included (a late fact sits where its event time
puts it). Rows without a kind (merge bookkeeping) carry the state the merge left, which is used as is.

The reason category uses the case's current vulnerability flags: the timeline does not keep past flags. A
reason the sender stated (referrals, enquiries, child-located: the row's ``reason`` code) replaces the
default category in the states that allow one, from that fact on, as it does for the live case. The codes
are the row's structured ``codes`` (``facts.timeline_codes``), never parsed from its note.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from services.tracking.state_machine import STATED_REASON_STATES, TRANSITIONS, EventKind, Verdict, _reason
from shared.events.internal import CaseState
from shared.events.vocab import MissingReason, Vulnerability


@dataclass(frozen=True)
class Spell:
    """From ``start`` (event time) the case was in ``state`` for ``reason``, until the next spell starts."""

    start: datetime
    state: str
    reason: str | None
    event_kind: str | None


@dataclass(frozen=True)
class ProvisionDetail:
    """Codes a timeline row carries about provision and exclusion (no personal data)."""

    occurred_at: datetime
    event_kind: str | None
    codes: dict[str, str]


class TimelineFact(Protocol):
    """What the replay reads of a timeline row (a ``TrackingTimelineEntry`` or a row of those columns)."""

    @property
    def occurred_at(self) -> datetime: ...
    @property
    def event_id(self) -> str: ...
    @property
    def event_kind(self) -> str | None: ...
    @property
    def verdict(self) -> str: ...
    @property
    def to_state(self) -> str | None: ...
    @property
    def codes(self) -> dict[str, str] | None: ...


def _kind(value: str | None) -> EventKind | None:
    try:
        return EventKind(value) if value else None
    except ValueError:
        return None


_REASON_CODES = frozenset(r.value for r in MissingReason)


def _stated_reason(row: TimelineFact) -> MissingReason | None:
    code = (row.codes or {}).get("reason")
    return MissingReason(code) if code in _REASON_CODES else None


def spells(rows: Iterable[TimelineFact], vulnerabilities: list[Vulnerability]) -> list[Spell]:
    ordered = sorted(rows, key=lambda r: (r.occurred_at, r.event_id))
    state: CaseState | None = None
    reason: MissingReason | None = None
    out: list[Spell] = []
    for row in ordered:
        kind = _kind(row.event_kind)
        stated = _stated_reason(row)
        if kind is not None:
            rule = TRANSITIONS[kind][state]
            moves = rule.verdict == Verdict.MOVE and rule.to_state is not None and rule.to_state != state
            if moves:
                assert rule.to_state is not None
                state = rule.to_state
                reason = _reason(state, kind, vulnerabilities)
            elif not (stated and state in STATED_REASON_STATES and stated != reason):
                continue  # nothing changed: the same spell goes on
            if stated and state in STATED_REASON_STATES:
                reason = stated  # the sender said why; a new spell when only the reason changed
        elif row.verdict in ("merged", "split") and row.to_state and row.to_state != state:
            state = CaseState(row.to_state)
            reason = _reason(state, EventKind.REFERRAL, vulnerabilities)  # the entry kind is not known
        else:
            continue
        assert state is not None  # a spell starts only once a state is known
        out.append(Spell(row.occurred_at, state.value, reason.value if reason else None, str(kind or "")))
    return out
