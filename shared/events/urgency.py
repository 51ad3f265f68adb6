"""Which inbound facts go on the urgent intake lane: facts that say a child may be at risk now.

An LA's alert to children's social care or the police must not wait while tracking works through a school's
roll load in front of it on the same intake partition. Two kinds of fact can raise such an alert at once
whatever else is known of the child, and a sender can say so without any lookup:

- any fact whose sender raised a safeguarding concern (``payload.safeguarding_concern``: the LA refers the
  child to social care at once, CME statutory guidance);
- ``whereabouts-unknown``: the child cannot be found (the caseworker at once; social care and the police
  when the child is known to social care or there is a concern).

Everything else stays on the ordinary intake topic, in its partition's order. Facts that become urgent only
through what tracking or escalation knows (a school's pupil-left-roll for a child on a protection plan)
cannot be told apart at intake and wait with the bulk (docs/PERFORMANCE.md, "A clock that runs, the
queues sampled, and an urgent lane"). A correction takes the lane of its own content; tracking folds a
correction that arrives before the fact it corrects in that fact's place (services/tracking/cases.py).
"""

from __future__ import annotations

from shared.events.envelope import Envelope

URGENT_EVENT_TYPES = frozenset({"whereabouts-unknown"})


def is_urgent(event: Envelope) -> bool:
    """The fact goes on the urgent intake lane."""
    if event.event_type in URGENT_EVENT_TYPES:
        return True
    return bool(getattr(event.payload, "safeguarding_concern", False))
