"""A case's states over event time, replayed from its timeline: what reports "as of a date" are built on.

The case row holds only the current state. The timeline keeps every fact with the event kind it was
classified as, so replaying the kinds through the transition table in event-time order (ties by event id)
gives the state the case was in at any moment, late facts included (a late fact sits where its event time
puts it). Rows without a kind (merge bookkeeping) carry the state the merge left, which is used as is.

The reason category uses the case's current vulnerability flags: the timeline does not keep past flags.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from services.tracking.models import TrackingTimelineEntry
from services.tracking.state_machine import TRANSITIONS, EventKind, Verdict, _reason
from shared.events.internal import CaseState
from shared.events.vocab import Vulnerability


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


def _kind(value: str | None) -> EventKind | None:
    try:
        return EventKind(value) if value else None
    except ValueError:
        return None


def spells(rows: Iterable[TrackingTimelineEntry], vulnerabilities: list[Vulnerability]) -> list[Spell]:
    ordered = sorted(rows, key=lambda r: (r.occurred_at, r.event_id))
    state: CaseState | None = None
    out: list[Spell] = []
    for row in ordered:
        kind = _kind(row.event_kind)
        if kind is not None:
            rule = TRANSITIONS[kind][state]
            if rule.verdict != Verdict.MOVE or rule.to_state is None or rule.to_state == state:
                continue
            state = rule.to_state
            reason = _reason(state, kind, vulnerabilities)
        elif row.verdict in ("merged", "split") and row.to_state and row.to_state != state:
            state = CaseState(row.to_state)
            reason = _reason(state, EventKind.REFERRAL, vulnerabilities)  # the entry kind is not known
        else:
            continue
        out.append(Spell(row.occurred_at, state.value, reason.value if reason else None, str(kind or "")))
    return out


def provision_codes(note: str | None) -> dict[str, str]:
    """The ``key=value;...`` codes the projection writes in a provision or exclusion row's note."""
    if not note or "=" not in note:
        return {}
    pairs = (part.split("=", 1) for part in note.split(";") if "=" in part)
    return {k.strip(): v.strip() for k, v in pairs}
