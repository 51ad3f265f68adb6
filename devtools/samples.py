"""Valid example events of every inbound type: used by the demo feed, the docs and the tests.

The children are invented; their UPNs carry correct check letters so that they pass validation.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from shared.events.catalogue import decode_inbound
from shared.events.envelope import Envelope
from shared.identifiers import upn_check_letter

DEMO_LA = "801"  # Bristol
DEMO_SCHOOL_URN = "108000"


def make_upn(la_code: str, estab: int, year: int, serial: int) -> str:
    body = f"{la_code}{estab:04d}{year % 100:02d}{serial:03d}"
    return upn_check_letter(body) + body


def child(serial: int = 1, la_code: str = DEMO_LA, **overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "upn": make_upn(la_code, 2000, 14, serial),
        "forename": f"Alex{serial}",
        "surname": "Example",
        "date_of_birth": "2014-03-01",
        "sex": "F",
        "postcode": "BS1 5TR",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


_PROVIDER: dict[str, Any] = {
    "name": "Example Tuition Ltd",
    "address": "2 Example Road, Bristol",
    "provider_type": "tuition_centre",
    "hours_per_week": 4,
    "hours_without_parent": 4,
}


def _payload(event_type: str, kid: dict[str, Any], on: date) -> dict[str, Any]:
    d = on.isoformat()
    payloads: dict[str, dict[str, Any]] = {
        "pupil-registered": {"school_urn": DEMO_SCHOOL_URN, "entry_date": d},
        "pupil-left-roll": {
            "school_urn": DEMO_SCHOOL_URN,
            "deletion_ground": "i",
            "leaving_date": d,
            "destination": {"known": False, "ctf_destination": "XXXXXXX"},
            "enquiries_completed": True,  # ground (i) after the joint enquiries with the LA, as the law asks
        },
        "absence-threshold-crossed": {
            "school_urn": DEMO_SCHOOL_URN,
            "rule": "unauthorised_10_consecutive_days",
            "first_absent_date": (on - timedelta(days=13)).isoformat(),  # ten weekdays ending on ``on``
            "last_absent_date": d,
            "school_days": 10,
        },
        "absence-threshold-retracted": {
            "school_urn": DEMO_SCHOOL_URN,
            "rule": "unauthorised_10_consecutive_days",
            "retracts_event_id": str(uuid.UUID(int=1)),
        },
        "exclusion-issued": {"school_urn": DEMO_SCHOOL_URN, "exclusion_type": "permanent", "start_date": d},
        "place-offered": {"provision_type": "school", "school_urn": "108001", "offered_on": d},
        "provision-started": {
            "provision_type": "school",
            "school_urn": "108001",
            "start_date": d,
            "hours_per_week": 32.5,
        },
        "child-located": {"located_on": d, "la_code": DEMO_LA},
        "whereabouts-unknown": {"since": d, "enquiries_made": ["home_visit", "school2school"]},
        "home-education-notified": {"school_urn": DEMO_SCHOOL_URN, "notified_on": d},
        "moved-out-of-area": {"new_la_code": "803", "moved_on": d},
        "moved-abroad": {"country": "PL", "moved_on": d, "confirmed": True},
        "referral-received": {
            "referrer_type": "health",
            "referrer_organisation": "School nursing team",
            "concern": "Not seen at any school since the family moved.",
        },
        "enquiry-recorded": {"enquiry_type": "home_visit", "outcome": "no_response"},
        "social-care-status-changed": {
            "status": "child_in_need",
            "has_social_worker": True,
            "effective_from": d,
        },
        "fair-access-referred": {"agreed_on": d},
        "sickness-absence-notified": {
            "school_urn": DEMO_SCHOOL_URN,
            "first_absent_date": d,
            "expected_school_days": 30,
        },
        "home-education-unsuitable": {"assessed_on": d},
        "home-education-ended": {"ended_on": d},
        "review-date-set": {"review_on": (on + timedelta(days=70)).isoformat()},
        "handover-confirmed": {
            "origin_la_code": DEMO_LA,
            "accepting_la_code": "803",
            "how": "located",
            "confirmed_on": d,
        },
        "case-outcome-recorded": {"outcome": "school", "school_urn": "108001", "recorded_on": d},
        "not-in-school-notice": {
            "notified_on": d,
            "arrangement": "home_education",
            "parents": [
                {
                    "name": "Sam Example",
                    "home_address": "1 Example Street, Bristol",
                    "provides_education": True,
                    "hours_per_week_educating": 20,
                }
            ],
            "providers": [_PROVIDER],
            "ehe_reason": "philosophical_or_preferential",
        },
        "education-provider-return": {"returned_on": d, "provider": {**_PROVIDER, "hours_per_week": 6}},
        "register-entry-recorded": {
            "recorded_on": d,
            "suitability": "suitable",
            "review_on": (on + timedelta(days=180)).isoformat(),
        },
    }
    if event_type == "not-in-school-notice":
        kid = {"address": "1 Example Street, Bristol", **kid}
    return {"child": kid, **payloads[event_type]}


def sample_event_dict(
    event_type: str,
    *,
    child_serial: int = 1,
    on: date = date(2025, 11, 3),
    la_code: str = DEMO_LA,
    school_urn: str | None = DEMO_SCHOOL_URN,
    event_id: uuid.UUID | None = None,
    kid: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "event_id": str(event_id or uuid.uuid4()),
        "event_type": event_type,
        "occurred_at": datetime(on.year, on.month, on.day, 9, 30, tzinfo=UTC).isoformat(),
        "source": {"system": "SIMS", "la_code": la_code, "school_urn": school_urn},
        "payload": _payload(event_type, kid or child(child_serial, la_code), on),
    }


def sample_event(event_type: str, **kwargs: Any) -> Envelope:
    return decode_inbound(sample_event_dict(event_type, **kwargs))
