"""The rules an inbound event must meet beyond its schema, in words a school's data officer would recognise.

Every rule returns ``Problem``s naming the field and the rule; none of them logs or keeps the values. The MIS
client (``services.referral.client``) runs the same checks before it produces onto the bus.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from services.referral.models import ClientKind, Problem
from shared.events import INBOUND_EVENT_TYPES, decode_inbound
from shared.events.envelope import Envelope
from shared.events.vocab import JOINT_ENQUIRY_GROUNDS, AbsenceRule, DeletionGround

UK = ZoneInfo("Europe/London")
CLOCK_TOLERANCE = timedelta(minutes=5)  # MIS clocks drift; a few minutes ahead is not a future event
YOUNGEST_AGE = 4  # reception children are 4; compulsory school age starts the term after the 5th birthday
OLDEST_AGE = 18  # compulsory school age ends at 16; sixth-formers can still be tracked to 18

# Payload dates that may lie ahead: an expected start, and an exclusion notified before it begins.
FUTURE_DATES_ALLOWED: dict[str, frozenset[str]] = {
    "place-offered": frozenset({"expected_start"}),
    "exclusion-issued": frozenset({"start_date"}),
    "review-date-set": frozenset({"review_on"}),  # the next review is always ahead
    "register-entry-recorded": frozenset({"review_on"}),
}
# Minimum school days (or percentage of sessions) that each absence rule needs before it is crossed.
ABSENCE_MINIMUM_DAYS = {
    AbsenceRule.UNAUTHORISED_10_DAYS: 10,
    AbsenceRule.CONTINUOUS_GNO_20_DAYS: 20,
    AbsenceRule.SICKNESS_15_DAYS: 15,
}
ABSENCE_MINIMUM_PERCENT = {AbsenceRule.PERSISTENT_10_PERCENT: 10.0, AbsenceRule.SEVERE_50_PERCENT: 50.0}
# Events about a pupil on a school's own register: only that school (or its LA) may send them.
SCHOOL_REGISTER_EVENTS = frozenset(
    {
        "pupil-registered",
        "pupil-left-roll",
        "absence-threshold-crossed",
        "absence-threshold-retracted",
        "exclusion-issued",
        "home-education-notified",
    }
)
# What a school's integration may send: facts from its own register, and referrals of children.
SCHOOL_EVENT_TYPES = SCHOOL_REGISTER_EVENTS | {"referral-received"}


@dataclass(frozen=True)
class Scope:
    """Who is submitting: the kind of client and the LA (and school) it may speak for."""

    kind: ClientKind
    la_code: str
    school_urn: str | None = None


def schema_problems(exc: ValidationError) -> list[Problem]:
    """pydantic errors as Problems: dotted field path, the error type as the rule (input never echoed)."""
    problems: list[Problem] = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = [str(part) for part in err["loc"]]
        if loc and loc[0] in INBOUND_EVENT_TYPES:
            loc = loc[1:]  # the discriminated union puts the event type first: not a field
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            loc = ["event_type"]
        problems.append(Problem(field=".".join(loc) or "body", rule=err["type"], message=err["msg"]))
    return problems


def parse_event(data: bytes | str | dict[str, Any]) -> tuple[Envelope | None, list[Problem]]:
    try:
        return decode_inbound(data), []
    except ValidationError as exc:
        return None, schema_problems(exc)


def uk_date(moment: datetime) -> date:
    return moment.astimezone(UK).date()


def age_on(date_of_birth: date, on: date) -> int:
    return on.year - date_of_birth.year - ((on.month, on.day) < (date_of_birth.month, date_of_birth.day))


def weekdays_between(first: date, last: date) -> int:
    """Monday-to-Friday days from first to last inclusive: an upper bound on school days."""
    days = (last - first).days + 1
    full_weeks, rest = divmod(days, 7)
    count = full_weeks * 5
    for offset in range(rest):
        if (first + timedelta(days=full_weeks * 7 + offset)).weekday() < 5:
            count += 1
    return count


def _time_problems(event: Envelope, now: datetime) -> list[Problem]:
    problems: list[Problem] = []
    if event.occurred_at > now + CLOCK_TOLERANCE:
        problems.append(
            Problem(field="occurred_at", rule="not_in_future", message="occurred_at is in the future")
        )
    today = uk_date(now + CLOCK_TOLERANCE)
    allowed = FUTURE_DATES_ALLOWED.get(event.event_type, frozenset())
    for name in type(event.payload).model_fields:
        value = getattr(event.payload, name)
        if (
            isinstance(value, date)
            and not isinstance(value, datetime)
            and name not in allowed
            and value > today
        ):
            problems.append(
                Problem(field=f"payload.{name}", rule="not_in_future", message=f"{name} is after today")
            )
    return problems


def _age_problems(event: Envelope, now: datetime) -> list[Problem]:
    dob: date | None = event.payload.child.date_of_birth
    if dob is None:
        return []
    field = "payload.child.date_of_birth"
    on = min(uk_date(event.occurred_at), uk_date(now))
    if dob > on:
        return [Problem(field=field, rule="not_in_future", message="date of birth is after the event date")]
    age = age_on(dob, on)
    if not YOUNGEST_AGE <= age <= OLDEST_AGE:
        return [
            Problem(
                field=field,
                rule="school_age",
                message=f"child would be {age} at the event date; expected {YOUNGEST_AGE} to {OLDEST_AGE}",
            )
        ]
    return []


def _absence_problems(event: Envelope) -> list[Problem]:
    p = event.payload
    problems: list[Problem] = []
    minimum = ABSENCE_MINIMUM_DAYS.get(p.rule)
    if minimum is not None and p.school_days < minimum:
        problems.append(
            Problem(
                field="payload.school_days",
                rule="threshold_not_met",
                message=f"{p.rule} needs at least {minimum} school days, got {p.school_days}",
            )
        )
    min_percent = ABSENCE_MINIMUM_PERCENT.get(p.rule)
    if min_percent is not None and (p.percentage is None or p.percentage < min_percent):
        problems.append(
            Problem(
                field="payload.percentage",
                rule="threshold_not_met",
                message=f"{p.rule} needs a percentage of sessions missed of at least {min_percent:g}",
            )
        )
    if p.school_days > weekdays_between(p.first_absent_date, p.last_absent_date):
        problems.append(
            Problem(
                field="payload.school_days",
                rule="more_days_than_weekdays",
                message="school_days is more than the weekdays from first_absent_date to last_absent_date",
            )
        )
    return problems


def _leaver_problems(event: Envelope) -> list[Problem]:
    p = event.payload
    problems: list[Problem] = []
    if p.destination.school_urn and p.destination.school_urn == p.school_urn:
        problems.append(
            Problem(
                field="payload.destination.school_urn",
                rule="destination_is_leaving_school",
                message="the destination school is the school the pupil is leaving",
            )
        )
    if p.destination.ctf_destination == "XXXXXXX" and p.destination.known:
        problems.append(
            Problem(
                field="payload.destination.ctf_destination",
                rule="unknown_destination_code",
                message="CTF destination XXXXXXX means the destination is unknown (known must be false)",
            )
        )
    dob = p.child.date_of_birth
    if p.deletion_ground == DeletionGround.OVER_COMPULSORY_AGE and dob and age_on(dob, p.leaving_date) < 15:
        problems.append(
            Problem(
                field="payload.deletion_ground",
                rule="ground_l_needs_school_leaving_age",
                message="ground (l) is for a pupil over compulsory school age; this pupil is under 15",
            )
        )
    return problems


def service_rule_problems(event: Envelope, now: datetime | None = None) -> list[Problem]:
    """The service's rules for an event that already passed its schema."""
    now = now or datetime.now(UTC)
    problems = _time_problems(event, now) + _age_problems(event, now)
    if event.event_type == "absence-threshold-crossed":
        problems += _absence_problems(event)
    elif event.event_type == "pupil-left-roll":
        problems += _leaver_problems(event)
    elif event.event_type == "moved-out-of-area" and event.payload.new_la_code == event.source.la_code:
        problems.append(
            Problem(
                field="payload.new_la_code",
                rule="new_la_is_this_la",
                message="a move out of area names another LA than the one reporting it",
            )
        )
    return problems


def advisories(event: Envelope) -> list[Problem]:
    """What an accepted event still owes, told to the sender in the 202 (the event is accepted as it is).

    A deletion under ground (h) or (i) is lawful only after the school and the LA have made reasonable
    enquiries together (SI 2024/208 reg 9(1)(h), (i)): without ``enquiries_completed`` the LA's caseworker is
    alerted (escalation rule ``deletion_without_joint_enquiries``) and the school is told here which grounds
    need them."""
    if event.event_type != "pupil-left-roll":
        return []
    p = event.payload
    if p.deletion_ground not in JOINT_ENQUIRY_GROUNDS or p.enquiries_completed:
        return []
    grounds = " and ".join(f"({g.value})" for g in sorted(JOINT_ENQUIRY_GROUNDS))
    return [
        Problem(
            field="payload.enquiries_completed",
            rule="joint_enquiries_required",
            message=(
                f"deletion grounds {grounds} need reasonable enquiries made jointly by the school and the LA"
                f" before the name is deleted; ground ({p.deletion_ground.value}) was sent without"
                " enquiries_completed, so the LA's caseworker has been asked to complete them with you"
            ),
        )
    ]


def scope_problems(event: Envelope, scope: Scope) -> list[Problem]:
    """Authorisation: a school speaks only for its URN and LA, an agency only for its LA."""
    problems: list[Problem] = []
    if event.source.la_code != scope.la_code:
        problems.append(
            Problem(
                field="source.la_code", rule="client_la", message="source.la_code is not this client's LA"
            )
        )
    if scope.kind == ClientKind.SCHOOL:
        if event.source.school_urn != scope.school_urn:
            problems.append(
                Problem(
                    field="source.school_urn",
                    rule="client_school",
                    message="source.school_urn is not this school",
                )
            )
        if event.event_type not in SCHOOL_EVENT_TYPES:
            problems.append(
                Problem(
                    field="event_type",
                    rule="event_type_not_permitted",
                    message=f"a school may send {', '.join(sorted(SCHOOL_EVENT_TYPES))}",
                )
            )
        payload_urn = getattr(event.payload, "school_urn", None)
        if event.event_type in SCHOOL_REGISTER_EVENTS and payload_urn != scope.school_urn:
            problems.append(
                Problem(
                    field="payload.school_urn",
                    rule="client_school",
                    message="a school reports only pupils on its own register",
                )
            )
    elif event.source.school_urn is not None:
        problems.append(
            Problem(
                field="source.school_urn",
                rule="agency_not_school",
                message="an agency client submits without a school URN",
            )
        )
    return problems
