"""The demo feed of ``cme run``: a short, realistic stream of facts about a few invented children."""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import httpx

from devtools.samples import DEMO_LA, DEMO_SCHOOL_URN, child, sample_event_dict
from shared.settings import Settings


@dataclass(frozen=True)
class Step:
    event_type: str
    child_serial: int
    days_ago: int
    changes: dict[str, Any] | None = None

    @property
    def from_school(self) -> bool:
        # Schools report their own register; the LA's CME team reports enquiries and outcomes.
        return self.event_type in SCHOOL_EVENTS


SCHOOL_EVENTS = frozenset(
    {
        "pupil-registered",
        "pupil-left-roll",
        "absence-threshold-crossed",
        "exclusion-issued",
        "home-education-notified",
    }
)


# Each child follows a path the statutory guidance describes; dates are relative to today.
STORY: tuple[Step, ...] = (
    # Left the roll to an unknown destination, could not be found, then located and back in school.
    Step("pupil-left-roll", 1, 30),
    Step("whereabouts-unknown", 1, 20),
    Step("child-located", 1, 10),
    Step("place-offered", 1, 6),
    Step("provision-started", 1, 2),
    # Permanently excluded: the LA must arrange full-time education from the sixth school day.
    Step("exclusion-issued", 2, 12),
    # Elective home education notified by the parent.
    Step("home-education-notified", 3, 8),
    # Moved to another LA's area.
    Step(
        "pupil-left-roll", 4, 15, {"deletion_ground": "g", "destination": {"known": True, "la_code": "803"}}
    ),
    Step("moved-out-of-area", 4, 14),
    # Ten consecutive school days of unauthorised absence.
    Step("absence-threshold-crossed", 5, 3),
    # A child known to social care goes missing from education: an immediate escalation.
    Step("social-care-status-changed", 6, 40),
    Step("pupil-left-roll", 6, 4),
    Step("whereabouts-unknown", 6, 1),
)


def demo_events(today: date | None = None) -> list[tuple[bool, dict[str, Any]]]:
    """(sent by the school?, event) for every step of the story, dated relative to ``today``."""
    today = today or date.today()
    events = []
    for step in STORY:
        on = today - timedelta(days=step.days_ago)
        event = sample_event_dict(
            step.event_type,
            kid=child(step.child_serial),
            on=on,
            event_id=_stable_id(step, on),
            school_urn=DEMO_SCHOOL_URN if step.from_school else None,
        )
        if step.changes:
            event["payload"].update(step.changes)
        events.append((step.from_school, event))
    return events


def _stable_id(step: Step, on: date) -> uuid.UUID:
    # Re-running the demo on the same day re-sends the same facts (the referral service's idempotency makes
    # that harmless); on a later day the story is dated anew, so its facts are new facts with ids of their own
    # (one id with another body would rightly be refused as 409 event_id_reused).
    return uuid.uuid5(uuid.NAMESPACE_URL, f"cme-demo/{step.child_serial}/{step.event_type}/{on.isoformat()}")


def feed_demo(settings: Settings, env: dict[str, str]) -> None:
    from devtools.demo_client import demo_api_key

    def key_for(from_school: bool, fresh: bool = False) -> str:
        urn = DEMO_SCHOOL_URN if from_school else None
        return demo_api_key(settings, env, la_code=DEMO_LA, school_urn=urn, fresh=fresh)

    keys = {True: key_for(True), False: key_for(False)}
    url = f"http://127.0.0.1:{settings.referral_port}/v1/events"
    with httpx.Client(timeout=10) as client:
        for from_school, event in demo_events():
            response = client.post(url, json=event, headers=_bearer(keys[from_school]))
            if response.status_code == 401:  # a key saved by a run on another store: make a new one
                keys[from_school] = key_for(from_school, fresh=True)
                response = client.post(url, json=event, headers=_bearer(keys[from_school]))
            print(f"demo {event['event_type']:<28} -> {response.status_code}", file=sys.stderr)


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
