"""Turn an inbound event into the state machine's Fact: only what a transition needs, no personal data."""

from __future__ import annotations

from typing import Any

from services.tracking.state_machine import Fact
from shared.events.envelope import Envelope
from shared.identifiers import LA_CODES

# The payload fields each event type contributes to the state machine (flat names in Fact.attrs).
_FIELDS: dict[str, tuple[str, ...]] = {
    "pupil-registered": ("school_urn",),
    "pupil-left-roll": ("school_urn", "deletion_ground", "enquiries_completed", "corrects_event_id"),
    "absence-threshold-crossed": ("school_urn", "rule", "school_days"),
    "absence-threshold-retracted": ("school_urn", "rule", "retracts_event_id"),
    "exclusion-issued": ("school_urn", "exclusion_type", "school_days"),
    "place-offered": ("provision_type", "school_urn", "fair_access"),
    "provision-started": ("provision_type", "school_urn", "full_time", "hours_per_week", "start_date"),
    "child-located": ("in_education", "reason", "school_urn"),
    "whereabouts-unknown": (),
    "home-education-notified": ("school_urn", "special_school", "la_consent_given", "ehe_reason"),
    "moved-out-of-area": ("new_la_code", "new_school_urn", "from_la_code"),
    "moved-abroad": ("country", "confirmed"),
    "referral-received": ("referrer_type", "reason"),
    "enquiry-recorded": ("enquiry_type", "outcome", "reason"),
    "social-care-status-changed": ("status", "has_social_worker"),
    "home-education-unsuitable": (),
    "home-education-ended": ("new_school_urn",),
    "review-date-set": ("review_on",),
    "handover-confirmed": ("origin_la_code", "accepting_la_code", "how", "school_urn"),
    "case-outcome-recorded": (
        "outcome",
        "school_urn",
        "provision_type",
        "la_code",
        "country",
        "deletion_ground",
    ),
    "sickness-absence-notified": ("school_urn", "expected_school_days", "cumulative"),
    "fair-access-referred": ("agreed_on",),
    # The register of children not in school (s.436B-436G): codes only; names and addresses stay in the
    # register's own rows (projection.register_details).
    "not-in-school-notice": ("arrangement", "school_urn", "ehe_reason"),
    "education-provider-return": ("ceased",),
    "register-entry-recorded": ("suitability", "review_on", "arrangement", "ehe_reason"),
}


# Codes a timeline row keeps about provision, exclusion and a stated reason, for the reports (no personal
# data): the row's structured ``codes``, never its free-text note.
_TIMELINE_CODES: dict[str, tuple[str, ...]] = {
    "provision-started": ("provision_type", "hours_per_week", "full_time", "start_date"),
    "place-offered": ("provision_type",),
    "exclusion-issued": ("exclusion_type", "school_days"),
    # The reason a sender stated, so the reports' history replays it (history.spells).
    "referral-received": ("reason",),
    "enquiry-recorded": ("reason",),
    "child-located": ("reason",),
    # The parent's primary reason for home education and the LA's view of it: the EHE return replays them.
    "home-education-notified": ("ehe_reason",),
    "not-in-school-notice": ("arrangement", "ehe_reason"),
    "register-entry-recorded": ("suitability", "arrangement", "ehe_reason"),
}


def timeline_codes(fact: Fact) -> dict[str, str] | None:
    """The fact's provision/exclusion/reason codes for its timeline row (values as text), or None when it
    has none."""
    names = _TIMELINE_CODES.get(fact.event_type, ())
    codes = {n: str(fact.attrs[n]) for n in names if fact.attrs.get(n) is not None}
    return codes or None


def _destination_la(event_type: str, payload: dict[str, Any]) -> str | None:
    """The LA a leaver, mover or located child went to, for the events that name one."""
    if event_type == "pupil-left-roll":
        return payload["destination"].get("la_code")
    if event_type == "moved-out-of-area":
        return str(payload["new_la_code"])
    if event_type == "child-located":
        return str(payload["la_code"])
    return None


def fact_from_inbound(
    event: Envelope, deployment: frozenset[str] | None = None, payload: dict[str, Any] | None = None
) -> Fact:
    """The compact fact of a validated inbound event (``shared.events.decode_inbound``). ``deployment``: the
    LAs this deployment serves (None: every English LA); a destination outside it (a Welsh LA always is) is
    marked ``destination_outside``, so the case waits for a person to record that LA's confirmation instead of
    a handover nobody reads. ``payload``: the event's payload as JSON, when the caller has dumped it
    already."""
    if payload is None:
        payload = event.payload.model_dump(mode="json")
    attrs = {name: payload[name] for name in _FIELDS[event.event_type] if payload.get(name) is not None}
    if event.event_type == "pupil-left-roll":
        dest = payload["destination"]
        attrs.update(
            destination_known=dest["known"],
            destination_school_urn=dest.get("school_urn"),
            destination_la_code=dest.get("la_code"),
            destination_country=dest.get("country"),
        )
    if event.event_type == "child-located":
        attrs["located_la_code"] = payload["la_code"]
    dest_la = _destination_la(event.event_type, payload)
    if dest_la and (dest_la not in LA_CODES or (deployment is not None and dest_la not in deployment)):
        attrs["destination_outside"] = True
    if payload.get("safeguarding_concern"):
        attrs["safeguarding_concern"] = True  # any event may carry one
    return Fact(
        event_id=str(event.event_id),
        event_type=event.event_type,
        occurred_at=event.occurred_at,
        la_code=str(event.source.la_code),
        attrs=attrs,
        vulnerabilities=payload["child"].get("vulnerabilities", []),
    )
