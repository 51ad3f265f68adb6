"""The escalation ladder as pure functions: given a rule, where an escalation stands and the time, what next.

An escalation starts when its rule's clock runs out (``fired_at``). Step 0 is alerted ``ladder[0].delay``
after that; every later step ``ladder[i].delay`` after the step before it, unless someone has acknowledged
(or the case was resolved). Steps are scheduled from when the previous step was *due*, not from when a
worker got round to it, so a worker that was down catches up to exactly the alerts a running one would
have sent, with the same times, and a step with a zero delay is alerted together with the one before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.escalation.rules import Rule
from shared.events.internal import EscalationAction, LadderLevel
from shared.school_calendar import SchoolCalendar


@dataclass(frozen=True, slots=True)
class LadderPosition:
    """Where an escalation stands: the last step alerted (-1: none yet) and when that step was due
    (for -1, the moment the rule's clock ran out)."""

    step_index: int
    step_due_at: datetime
    stopped: bool = False  # acknowledged, resolved or cancelled: the ladder does not move again


@dataclass(frozen=True, slots=True)
class StepAlert:
    step_index: int
    level: LadderLevel
    action: EscalationAction
    due_at: datetime


@dataclass(frozen=True, slots=True)
class Advance:
    alerts: tuple[StepAlert, ...]
    position: LadderPosition
    next_due_at: datetime | None  # when the next step is due; None when the ladder is exhausted or stopped


def rule_due_at(rule: Rule, clock_start: datetime, calendar: SchoolCalendar) -> datetime:
    """When the rule's clock, started at ``clock_start``, runs out (immediate rules: at once)."""
    return rule.clock.due_at(clock_start, calendar)


def step_due_at(rule: Rule, step_index: int, previous_due_at: datetime, calendar: SchoolCalendar) -> datetime:
    return rule.ladder[step_index].delay.due_at(previous_due_at, calendar)


def advance(rule: Rule, position: LadderPosition, now: datetime, calendar: SchoolCalendar) -> Advance:
    """Every step that is due by ``now`` (in order), the new position and when the next step falls due."""
    if position.stopped:
        return Advance((), position, None)
    alerts: list[StepAlert] = []
    index, due = position.step_index, position.step_due_at
    while index + 1 < len(rule.ladder):
        next_due = step_due_at(rule, index + 1, due, calendar)
        if next_due > now:
            return Advance(tuple(alerts), LadderPosition(index, due), next_due)
        index, due = index + 1, next_due
        action = EscalationAction.RAISED if index == 0 else EscalationAction.STEPPED_UP
        alerts.append(StepAlert(index, rule.ladder[index].level, action, due))
    return Advance(tuple(alerts), LadderPosition(index, due), None)


def acknowledgement_stops(position: LadderPosition, acked_step: int) -> bool:
    """An acknowledgement stops the step-up when it is for a step already alerted.

    Any alerted step counts, not only the newest: steps with zero delay are alerted together (caseworker,
    social care and police at once), and whichever of them acts first has acted for all. An ack for a step
    not yet alerted cannot be genuine and changes nothing.
    """
    return not position.stopped and 0 <= acked_step <= position.step_index
