"""Codes in words: case states, reasons, facts, enquiries and ladder levels as a caseworker reads them.

One mapping for the whole web: a new state or reason needs only a label here. A code with no label is shown
as its own words ("transfer_pending" -> "Transfer pending"), never as a raw code with underscores.
"""

from __future__ import annotations

from shared.events.vocab import EnquiryOutcome, EnquiryType

STATES = {
    "on_roll_at_risk": "On roll, at risk",
    "missing_education": "Missing education",
    "whereabouts_unknown": "Whereabouts unknown",
    "awaiting_provision": "Awaiting a place",
    "place_offered": "Place offered",
    "in_education": "In education",
    "electively_home_educated": "Home educated",
    "left_area": "Left the area",
    "moved_abroad": "Moved abroad",
    "transfer_pending": "Transfer pending",
    "handed_over": "Handed over to another LA",
    "awaiting_la_confirmation": "Waiting for the other LA to confirm",
    "part_time_provision": "Part-time provision",
    "out_of_scope": "Out of scope",
}

REASONS = {
    "awaiting_place": "Awaiting a school place",
    "whereabouts_unknown": "Whereabouts unknown",
    "left_la": "Left the LA",
    "moved_abroad": "Moved abroad",
    "gypsy_roma_traveller": "Gypsy, Roma or Traveller",
    "failed_to_enrol_or_transition": "Failed to enrol or transfer",
    "elective_home_education": "Elective home education",
    "home_education_unsuitable": "Home education not suitable",
    "sen": "Special educational needs",
    "health": "Health",
    "excluded": "Excluded",
    "pregnant_or_young_parent": "Pregnant or young parent",
    "other": "Other",
    "not_recorded": "Not recorded",
}

FACTS = {
    "pupil-registered": "Registered at a school",
    "pupil-left-roll": "Left a school's roll",
    "absence-threshold-crossed": "Absence threshold crossed",
    "absence-threshold-retracted": "Absence threshold withdrawn",
    "exclusion-issued": "Exclusion issued",
    "place-offered": "Place offered",
    "provision-started": "Provision started",
    "child-located": "Child located",
    "whereabouts-unknown": "Whereabouts unknown",
    "home-education-notified": "Home education notified",
    "moved-out-of-area": "Moved to another LA",
    "moved-abroad": "Moved abroad",
    "referral-received": "Referral received",
    "enquiry-recorded": "Enquiry recorded",
    "social-care-status-changed": "Social care status changed",
    "home-education-unsuitable": "Home education assessed as unsuitable",
    "home-education-ended": "Home education ended",
    "review-date-set": "Review date set",
    "handover-confirmed": "Handover confirmed",
    "case-outcome-recorded": "Case closed with an outcome",
    "case-clock-expired": "No registration in time: missing education",
    "child-merged": "Records linked",
    "child-split": "Link undone",
    "not-in-school-notice": "Parent's notice (not in school)",
    "education-provider-return": "Education provider's return",
    "register-entry-recorded": "Register entry recorded",
}

# The register of children not in school (s.436B-436G): why a child is on it, and the LA's view of the
# education.
REGISTER_CATEGORIES = {
    "elective_home_education": "Home educated",
    "otherwise_than_at_school": "Educated otherwise than at school",
    "registered_educated_elsewhere": "On a school roll, educated elsewhere",
    "part_time_provision": "Part-time provision",
    "missing_education": "Missing education",
    "handed_over": "Moved to another LA (not yet confirmed)",
    "awaiting_registration": "Waiting for a school's registration",
    "reported_by_provider": "Reported by a provider",
    "recorded_by_la": "Recorded by the LA",
}
EDUCATION = {
    "suitable": "Suitable",
    "not_yet_assessed": "Not yet assessed",
    "unknown": "Unknown",
    "unsuitable": "Unsuitable",
}
LEFT_REASONS = {
    "registered_at_school": "Registered at a school",
    "full_time_provision": "In full-time provision",
    "other_la_accepted": "Another LA has the child",
    "moved_abroad": "Moved abroad",
    "out_of_scope": "Out of scope",
}

VULNERABILITIES = {
    "sen_support": "SEN support",
    "ehcp": "EHC plan",
    "child_in_need": "Child in need",
    "child_protection_plan": "Child protection plan",
    "looked_after": "Looked after",
    "youth_justice": "Known to youth justice",
    "armed_forces_family": "Armed forces family",
    "young_carer": "Young carer",
    "gypsy_roma_traveller": "Gypsy, Roma or Traveller",
    "pregnant_or_young_parent": "Pregnant or young parent",
    "none": "None",
}

ENQUIRY_TYPES = {
    EnquiryType.PHONE_CONTACT: "Phone numbers held for the family",
    EnquiryType.SIBLINGS_SCHOOLS: "Siblings' schools",
    EnquiryType.HOME_VISIT: "Home visit",
    EnquiryType.LETTER: "Letter to the last known address",
    EnquiryType.OTHER_LA: "Another local authority",
    EnquiryType.SCHOOL2SCHOOL: "School2school lost pupil database",
    EnquiryType.HOUSING: "Housing",
    EnquiryType.ADMISSIONS: "Admissions",
    EnquiryType.HEALTH: "Health (GP, school nurse, health visitor)",
    EnquiryType.POLICE: "Police",
    EnquiryType.CHILDRENS_SOCIAL_CARE: "Children's social care",
    EnquiryType.YOUTH_JUSTICE: "Youth justice",
    EnquiryType.HMRC: "HMRC",
    EnquiryType.HOME_OFFICE: "Home Office",
    EnquiryType.FCDO: "Foreign, Commonwealth and Development Office",
    EnquiryType.OTHER: "Other",
}

# What a caseworker picks as the result of an enquiry; "note" is a note on the case, not an enquiry result.
ENQUIRY_OUTCOMES = {
    EnquiryOutcome.NOT_LOCATED: "No trace",
    EnquiryOutcome.INFORMATION_RECEIVED: "Information found",
    EnquiryOutcome.NO_RESPONSE: "Awaiting a reply",
    EnquiryOutcome.LOCATED: "Child located",
}
ALL_ENQUIRY_OUTCOMES = {**ENQUIRY_OUTCOMES, EnquiryOutcome.NOTE: "Note"}

LEVELS = {
    "caseworker": "Caseworker",
    "senior_cme_officer": "Senior CME officer",
    "childrens_social_care": "Children's social care",
    "police": "Police",
}

VERDICTS = {
    "move": "Changed the state",
    "stay": "No change of state",
    "refuse": "Did not fit the case: for review",
    "late": "Arrived late: placed by its date",
    "merged": "Records linked",
    "split": "Link undone",
    "forwarded": "Forwarded",
}

RESOLUTIONS = {
    "enquiries_continuing": "Enquiries are continuing",
    "referred_to_social_care": "Referred to children's social care",
    "referred_to_police": "Referred to the police",
    "other_la_contacted": "Waiting for the other LA",
    "outcome_being_recorded": "Education confirmed: outcome to follow",
    "duplicate_alert": "Another alert covers it",
    "raised_in_error": "Raised in error",
}

ALERT_STATES = {
    "open": "Waiting",
    "acknowledged": "Acknowledged",
    "cancelled": "Cancelled",
    "superseded": "Superseded",
}


def _fallback(code: str) -> str:
    text = code.replace("_", " ").replace("-", " ").strip()
    return text[:1].upper() + text[1:]


def in_words(code: object, table: dict[str, str] | dict[EnquiryType, str] | None = None) -> str:
    """The label of ``code`` in ``table`` (or in any table when none is given); its own words otherwise."""
    if code is None or code == "":
        return "—"
    text = str(code)
    tables: list[dict[str, str]] = (
        [table]  # type: ignore[list-item]
        if table is not None
        else [STATES, REASONS, FACTS, LEVELS, VERDICTS, VULNERABILITIES]  # type: ignore[list-item]
    )
    for t in tables:
        if text in t:
            return t[text]
    return _fallback(text)


def state_words(code: object) -> str:
    return in_words(code, STATES)


def reason_words(code: object) -> str:
    return in_words(code, REASONS)


def fact_words(code: object) -> str:
    # A timeline row's event kind ("moved-abroad:confirmed"): the type before the colon names the fact.
    text = str(code or "")
    head, _, detail = text.partition(":")
    label = in_words(head, FACTS)
    return f"{label} ({_fallback(detail).lower()})" if detail else label
