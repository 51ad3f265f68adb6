"""A merge of two records of one child: the merged child's clocks and escalations stop."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from services.escalation.episodes import end_episodes, lock_child_deadlines
from services.escalation.unit_of_work import Deps, Outcome, as_utc
from shared.events.internal import (
    ChildMerged,
)
from shared.logs import get_logger

log = get_logger(__name__)


def handle_merge(session: Session, deps: Deps, event: ChildMerged, now: datetime) -> Outcome:
    """A person linked two records of one child: the merged child's clocks stop, or the child would be
    alerted on twice. The survivor's re-folded case arrives as its own transition; undoing the merge
    re-opens the merged child's case with a transition of its own, which starts its clocks again."""
    p = event.payload
    if p.facts:
        return Outcome("not_watched")  # tracking's forward of the merge to the survivor: nothing to stop
    lock_child_deadlines(session, str(p.merged_child_id), p.la_code)
    # A person's decision takes effect when it is made, and never after this service's present: on simulated
    # time (tests, a replay) the decision's wall-clock time can lie ahead of the clock, and an end in the
    # future would keep the merged child's steps due before it "to be decided" while its clocks must stop.
    cancelled, published = end_episodes(
        session, deps, str(p.merged_child_id), p.la_code, now, reason="merged_into_another_child",
        at=min(as_utc(event.occurred_at), as_utc(now)),
    )  # fmt: skip
    return Outcome("merged", cancelled=cancelled, published=published)
