"""Facts a caseworker records in the web (enquiries, notes, outcomes), as inbound events for the intake.

The web is one more source: it builds the same events a school's MIS or an agency sends, validated by the
same models, and submits them to the referral service's intake with the web's service token. Tracking and
escalation then see them as they see any other fact. The child is named by the strong identifier tracking
holds for it (so identity resolution finds the same child exactly), else by names and date of birth.

Each form carries a random ``form_id``; the event id is derived from it, so a form sent twice (a double
click, a reload after a timeout) is one event: intake answers the second as a duplicate.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

from pydantic import ValidationError

from services.web.words import ALL_ENQUIRY_OUTCOMES, EDUCATION, ENQUIRY_TYPES
from shared.events import INBOUND_EVENT_TYPES, decode_inbound
from shared.events.catalogue import event_class
from shared.events.envelope import Envelope
from shared.events.vocab import EducationSuitability, EnquiryOutcome, EnquiryType, ProvisionType

WEB_SYSTEM = "cme-web"
FORM_NAMESPACE = uuid.UUID("6f1d3c2a-9b7e-4c55-8d0e-2a4b6c8d0e1f")
STRONG_ORDER = ("upn", "uln", "nhs_number", "la_child_id")

# The outcomes a caseworker records, in the order the case page offers them.
OUTCOMES = {
    "child-located": "Child located",
    "place-offered": "Place offered",
    "provision-started": "Provision started",
    "home-education-notified": "Home education notified",
    "moved-out-of-area": "Moved to another LA",
    "moved-abroad": "Moved abroad",
}
PROVISION_TYPES = {
    ProvisionType.SCHOOL: "School",
    ProvisionType.ALTERNATIVE_PROVISION: "Alternative provision",
    ProvisionType.PUPIL_REFERRAL_UNIT: "Pupil referral unit",
    ProvisionType.HOSPITAL_EDUCATION: "Hospital education",
    ProvisionType.TUITION: "Tuition",
    ProvisionType.OTHER: "Other",
}


CLOSE = "case-outcome-recorded"
# How a case closes: where the child's education is confirmed (or why the child is out of scope), and the
# field each outcome must name (the event's own model checks the same).
CLOSING_OUTCOMES = {
    "school": ("Registered at a school", "school_urn"),
    "provision": ("Full-time provision the LA arranged", "provision_type"),
    "registered_home_education": ("Home education, notified to the LA", None),
    "other_la_accepted": ("Another LA confirmed it has the child", "la_code"),
    "confirmed_abroad": ("Confirmed living abroad", "country"),
    "out_of_scope": ("Out of scope: detained, died, or over compulsory school age", "deletion_ground"),
}


REVIEW = "review-date-set"
REGISTER_REVIEW = "register-entry-recorded"
# The outcome forms' own fields (which depend on the outcome): short codes, dates and yes/no answers.
OUTCOME_FIELDS = frozenset(
    {
        "la_code", "in_education", "provision_type", "school_urn", "expected_start", "fair_access",
        "hours_per_week", "part_time", "special_school", "la_consent_given", "new_la_code", "country",
        "confirmed", "deletion_ground", "reason",
    }
)  # fmt: skip


def supported(event_type: str) -> bool:
    """Whether the event catalogue has this fact (closing with an outcome comes with tracking's outcomes)."""
    return event_type in INBOUND_EVENT_TYPES


def allows_reason(event_type: str) -> bool:
    """Whether the fact may state why the child is missing education (the DfE return's reason category)."""
    if not supported(event_type):
        return False
    payload = event_class(event_type).model_fields["payload"].annotation
    return "reason" in getattr(payload, "model_fields", {})


class FactRefused(ValueError):
    """The form does not make a valid fact: the messages say what to correct (no values echoed)."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


def event_id_for(form_id: str, event_type: str) -> uuid.UUID:
    """One event per form and kind of fact: the page's forms share a form id, each makes its own event."""
    try:
        return uuid.uuid5(FORM_NAMESPACE, f"{uuid.UUID(form_id)}:{event_type}")
    except ValueError as exc:
        raise FactRefused(["The form is out of date: reload the page and try again."]) from exc


def child_identity(child: dict[str, Any]) -> dict[str, Any]:
    """How the fact names the child: tracking's strong identifier, else surname and date of birth."""
    ids = {i["kind"]: i["value"] for i in reversed(child.get("identifiers") or [])}
    for kind in STRONG_ORDER:
        if ids.get(kind):
            return {kind: ids[kind]}
    named = {
        "forename": child.get("forename"),
        "surname": child.get("surname"),
        "date_of_birth": child.get("date_of_birth"),
        "sex": child.get("sex"),
    }
    return {k: v for k, v in named.items() if v}


def occurred_at(day: date, now: datetime) -> datetime:
    """Event time: the day the person names (now if today); midday UTC for an earlier day."""
    if day > now.date():
        raise FactRefused(["The date cannot be in the future."])
    return now if day == now.date() else datetime.combine(day, time(12), UTC)


@dataclass(frozen=True)
class Recorded:
    event: Envelope
    body: dict[str, Any]
    summary: str = ""  # what the person recorded, in words, for the timeline (kept by the web)


def build(
    event_type: str, form_id: str, child: dict[str, Any], la_code: str, day: date, payload: dict[str, Any],
    now: datetime | None = None, summary: str = "",
) -> Recorded:  # fmt: skip
    """The inbound event, checked against the catalogue's model: FactRefused if it does not validate."""
    now = now or datetime.now(UTC)
    body = {
        "event_id": str(event_id_for(form_id, event_type)),
        "event_type": event_type,
        "occurred_at": occurred_at(day, now).isoformat(),
        "source": {"system": WEB_SYSTEM, "la_code": la_code},
        "payload": {"child": child_identity(child), **{k: v for k, v in payload.items() if v is not None}},
    }
    try:
        event = decode_inbound(body)
    except ValidationError as exc:
        fields = sorted({".".join(str(p) for p in e["loc"][2:]) or "form" for e in exc.errors()})
        raise FactRefused([f"Check {f.replace('payload.', '').replace('_', ' ')}." for f in fields]) from exc
    return Recorded(event, body, summary)


def enquiry(
    form_id: str, child: dict[str, Any], la_code: str, day: date, enquiry_type: str, outcome: str,
    contact: str, note: str, now: datetime | None = None, reason: str = "",
) -> Recorded:  # fmt: skip
    """An enquiry (who was asked, and what came of it) as an enquiry-recorded fact; with the reason the child
    is missing education when the enquiry found it out (and the event carries one)."""
    text = "\n".join(
        part for part in (f"Contact: {contact.strip()}" if contact.strip() else "", note.strip()) if part
    )
    if enquiry_type not in set(EnquiryType) or outcome not in set(EnquiryOutcome):
        raise FactRefused(["Choose the kind of enquiry and its result."])
    said = f"{ENQUIRY_TYPES[EnquiryType(enquiry_type)]}: {ALL_ENQUIRY_OUTCOMES[EnquiryOutcome(outcome)]}"
    return build(
        "enquiry-recorded", form_id, child, la_code, day,
        {
            "enquiry_type": enquiry_type, "outcome": outcome, "note": text or None,
            **_reason("enquiry-recorded", reason),
        },
        now,
        "\n".join(p for p in (said, text) if p),
    )  # fmt: skip


def note(
    form_id: str, child: dict[str, Any], la_code: str, text: str, now: datetime | None = None
) -> Recorded:
    """A note on an alert or case: an enquiry-recorded fact (outcome "note") on the child's timeline."""
    now = now or datetime.now(UTC)
    return build(
        "enquiry-recorded", form_id, child, la_code, now.date(),
        {"enquiry_type": EnquiryType.OTHER.value, "outcome": EnquiryOutcome.NOTE.value, "note": text}, now,
        f"Note: {text}",
    )  # fmt: skip


def _reason(event_type: str, reason: str) -> dict[str, str]:
    """The stated reason, where the event has one and the person gave it."""
    if not reason.strip():
        return {}
    if not allows_reason(event_type):
        raise FactRefused(["This kind of fact does not carry a reason."])
    return {"reason": reason.strip()}


def _flag(form: dict[str, str], name: str) -> bool:
    return form.get(name, "") in ("yes", "true", "on", "1")


def _opt(form: dict[str, str], name: str) -> str | None:
    value = (form.get(name) or "").strip()
    return value or None


def outcome(
    event_type: str, form_id: str, child: dict[str, Any], la_code: str, day: date, form: dict[str, str],
    now: datetime | None = None,
) -> Recorded:  # fmt: skip
    """An outcome (located, place offered, provision started, home education, moved) from the case page."""
    if event_type not in OUTCOMES:
        raise FactRefused(["Choose an outcome."])
    d = day.isoformat()
    payloads: dict[str, dict[str, Any]] = {
        "child-located": {
            "located_on": d, "la_code": _opt(form, "la_code") or la_code,
            "in_education": _flag(form, "in_education"), **_reason(event_type, form.get("reason", "")),
        },
        "place-offered": {
            "provision_type": _opt(form, "provision_type"), "school_urn": _opt(form, "school_urn"),
            "offered_on": d, "expected_start": _opt(form, "expected_start"),
            "fair_access": _flag(form, "fair_access"),
        },
        "provision-started": {
            "provision_type": _opt(form, "provision_type"), "school_urn": _opt(form, "school_urn"),
            "start_date": d, "hours_per_week": _opt(form, "hours_per_week"),
            "full_time": not _flag(form, "part_time"),
        },
        "home-education-notified": {
            "school_urn": _opt(form, "school_urn"), "notified_on": d,
            "special_school": _flag(form, "special_school"),
            "la_consent_given": _flag(form, "la_consent_given") if _flag(form, "special_school") else None,
        },
        "moved-out-of-area": {
            "new_la_code": _opt(form, "new_la_code"), "moved_on": d,
            "new_school_urn": _opt(form, "school_urn"),
        },
        "moved-abroad": {
            "country": (_opt(form, "country") or "").upper() or None, "moved_on": d,
            "confirmed": _flag(form, "confirmed"),
        },
    }  # fmt: skip
    said = [OUTCOMES[event_type]]
    for name, value in payloads[event_type].items():
        if value not in (None, False, "") and name not in (
            "located_on",
            "offered_on",
            "start_date",
            "notified_on",
            "moved_on",
        ):
            said.append(
                f"{name.replace('_', ' ')}: {'yes' if value is True else PROVISION_TYPES.get(value, value)}"
            )  # type: ignore[call-overload]
    return build(event_type, form_id, child, la_code, day, payloads[event_type], now, "; ".join(said))


def close(
    form_id: str, child: dict[str, Any], la_code: str, day: date, form: dict[str, str],
    now: datetime | None = None,
) -> Recorded:  # fmt: skip
    """Closing the case with an outcome that names where the child's education is confirmed."""
    if not supported(CLOSE):
        raise FactRefused(["Closing a case with an outcome is not available yet."])
    chosen = form.get("outcome", "")
    if chosen not in CLOSING_OUTCOMES:
        raise FactRefused(["Choose where the child's education is confirmed."])
    payload = {
        "outcome": chosen, "recorded_on": day.isoformat(), "school_urn": _opt(form, "school_urn"),
        "provision_type": _opt(form, "provision_type"), "la_code": _opt(form, "la_code"),
        "country": (_opt(form, "country") or "").upper() or None,
        "deletion_ground": _opt(form, "deletion_ground"),
    }  # fmt: skip
    label, needed = CLOSING_OUTCOMES[chosen]
    detail = f"{needed.replace('_', ' ')}: {payload[needed]}" if needed and payload.get(needed) else ""
    return build(
        CLOSE,
        form_id,
        child,
        la_code,
        day,
        payload,
        now,
        "; ".join(p for p in ("Closed", label, detail) if p),
    )


def review(
    form_id: str, child: dict[str, Any], la_code: str, due: date, now: datetime | None = None
) -> Recorded:
    """The next review date the case's owner set, as a review-date-set fact (event time: now)."""
    now = now or datetime.now(UTC)
    return build(REVIEW, form_id, child, la_code, now.date(), {"review_on": due.isoformat()}, now,
                 f"Next review on {due.isoformat()}")  # fmt: skip


def outcome_fields(sent: Mapping[str, Any]) -> dict[str, str]:
    """The outcome's own fields of a posted form (others ignored), each cut to 40 characters."""
    return {k: str(v)[:40] for k, v in sent.items() if k in OUTCOME_FIELDS and isinstance(v, str)}


def register_review(
    form_id: str, entry: dict[str, Any], la_code: str, suitability: str, review_on: str, note: str,
    now: datetime | None = None,
) -> Recorded:  # fmt: skip
    """A caseworker's review of a register entry as a register-entry-recorded fact (event time: now)."""
    if suitability not in set(EducationSuitability):
        raise FactRefused(["Choose what the LA found about the child's education."])
    now = now or datetime.now(UTC)
    child = {
        "identifiers": [{"kind": "upn", "value": entry["upn"]}] if entry.get("upn") else [],
        **{k: entry.get(k) for k in ("forename", "surname", "date_of_birth")},
    }
    payload = {
        "recorded_on": now.date().isoformat(),
        "suitability": suitability,
        "review_on": review_on or None,
        "note": note.strip() or None,
    }
    said = f"Register review: education {EDUCATION[suitability].lower()}"
    if review_on:
        said += f"; next review on {review_on}"
    return build(REGISTER_REVIEW, form_id, child, la_code, now.date(), payload, now, said)
