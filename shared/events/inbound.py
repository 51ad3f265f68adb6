"""Payloads of the inbound facts schools, MIS integrations and agencies send (cme.intake.v1)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, StrictBool, WithJsonSchema, model_validator

from shared.events.envelope import URN, DestinationLACode, Envelope, InboundEnvelope, LACode, StrictModel
from shared.events.vocab import (
    AbsenceRule,
    CaseOutcome,
    DeletionGround,
    EducationArrangement,
    EducationSuitability,
    EHEReason,
    EnquiryOutcome,
    EnquiryType,
    ExclusionType,
    HandoverConfirmation,
    MissingReason,
    ProviderType,
    ProvisionType,
    ReferrerType,
    Sex,
    SocialCareStatus,
    Vulnerability,
)
from shared.identifiers import validate_nhs_number, validate_postcode, validate_uln, validate_upn

# The schema documents each identifier's shape; the validator also checks what a pattern cannot (check
# letters and digits, the LA numbers that issue UPNs) and normalises case and spaces.
UPN = Annotated[
    str,
    AfterValidator(validate_upn),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^[A-Za-z][0-9]{11}[0-9A-Za-z]$",
            "description": "Unique pupil number: check letter, issuing LA (any LA that issued UPNs, former "
            "and Welsh ones too), establishment, year, serial; a temporary UPN ends in a letter",
        }
    ),
]
ULN = Annotated[
    str, AfterValidator(validate_uln), WithJsonSchema({"type": "string", "pattern": "^[1-9][0-9]{9}$"})
]
NHSNumber = Annotated[
    str,
    AfterValidator(validate_nhs_number),
    WithJsonSchema({"type": "string", "pattern": "^[0-9]{3} ?[0-9]{3} ?[0-9]{4}$"}),
]
Postcode = Annotated[
    str,
    AfterValidator(validate_postcode),
    WithJsonSchema({"type": "string", "pattern": "^[A-Za-z]{1,2}[0-9][0-9A-Za-z]? ?[0-9][A-Za-z]{2}$"}),
]
Name = Annotated[str, Field(min_length=1, max_length=100)]
FreeText = Annotated[str, Field(max_length=4000)]
# CTF destination codes for an unknown (lost pupil) and an independent / outside England-Wales destination.
CTFDestination = Literal["XXXXXXX", "MMMMMMM"]


def _present(*names: str) -> dict[str, Any]:
    """JSON Schema: these properties are present and not null."""
    return {"required": list(names), "properties": {n: {"not": {"type": "null"}} for n in names}}


class ChildIdentity(StrictModel):
    """What the sender knows of the child. Strong identifiers first; names and date of birth for matching."""

    # The identity rule (``_identifiable``) in the schema too, so clients and generated code see it.
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                _present("upn"),
                _present("uln"),
                _present("nhs_number"),
                _present("la_child_id"),
                _present("surname", "date_of_birth"),
            ]
        }
    )

    upn: UPN | None = None
    former_upn: UPN | None = None
    uln: ULN | None = None
    nhs_number: NHSNumber | None = None
    la_child_id: Annotated[str | None, Field(max_length=64, pattern=r"^[A-Za-z0-9._-]+$")] = None
    forename: Name | None = None
    surname: Name | None = None
    date_of_birth: date | None = None
    sex: Sex | None = None
    postcode: Postcode | None = None
    address: Annotated[str | None, Field(max_length=300)] = None
    year_group: Annotated[str | None, Field(pattern=r"^(N1|N2|R|[1-9]|1[0-4]|X)$")] = None
    vulnerabilities: list[Vulnerability] = Field(default_factory=list)

    @model_validator(mode="after")
    def _identifiable(self) -> ChildIdentity:
        strong = self.upn or self.uln or self.nhs_number or self.la_child_id
        if not strong and not (self.surname and self.date_of_birth):
            raise ValueError(
                "child needs a UPN, ULN, NHS number or LA id, or else a surname and date of birth"
            )
        return self


class ChildFact(StrictModel):
    """Base of every inbound payload: a fact about one child."""

    child: ChildIdentity
    safeguarding_concern: StrictBool = Field(
        default=False,
        description=(
            "The sender has a safeguarding concern about the child: the LA refers it to children's social"
            " care (MASH) at once, whatever the event (CME statutory guidance)"
        ),
    )


# A CME reason category the sender states (the LA's return counts it); stated only on events where the
# sender is in a position to know why the child is out of education.
StatedReason = Annotated[
    MissingReason | None,
    Field(description="Why the child is missing education, as the sender knows it (DfE return category)"),
]


class Destination(StrictModel):
    """Where a leaver went, as far as the school knows."""

    known: StrictBool
    school_urn: URN | None = None
    la_code: DestinationLACode | None = None
    school_estab: Annotated[
        str | None,
        Field(
            pattern=r"^[0-9]{4}$",
            description="The school's DfE establishment number (with la_code, its DfE number), when its URN "
            "is not known: a CTF names the destination by LEA and Estab",
        ),
    ] = None
    country: Annotated[str | None, Field(min_length=2, max_length=2, pattern=r"^[A-Z]{2}$")] = None
    ctf_destination: CTFDestination | None = None

    @property
    def names_school(self) -> bool:
        return bool(self.school_urn or self.school_estab)

    @model_validator(mode="after")
    def _consistent(self) -> Destination:
        if self.school_estab and not self.la_code:
            raise ValueError("a destination school_estab needs la_code (a DfE number is LA + establishment)")
        detail = self.school_urn or self.la_code or self.country
        if self.known and not detail:
            raise ValueError("a known destination needs school_urn, la_code or country")
        if not self.known and detail:
            raise ValueError("an unknown destination cannot name a school, LA or country")
        return self


class PupilRegisteredPayload(ChildFact):
    school_urn: URN
    entry_date: date
    non_standard_entry: StrictBool = True


class PupilLeftRollPayload(ChildFact):
    school_urn: URN
    deletion_ground: DeletionGround
    leaving_date: date
    destination: Destination
    enquiries_completed: StrictBool = False
    corrects_event_id: uuid.UUID | None = Field(
        default=None,
        description="Set on a correction: the earlier pupil-left-roll of this pupil, from this school, that "
        "this one replaces (its destination, ground or date was wrong). Tracking folds the correction in its "
        "place. The referral API builds one with POST /v1/events/{event_id}/correction",
    )

    @model_validator(mode="after")
    def _ground_fits_destination(self) -> PupilLeftRollPayload:
        if self.deletion_ground == DeletionGround.REGISTERED_ELSEWHERE and not self.destination.names_school:
            raise ValueError(
                "deletion ground (a) registered at another school needs destination.school_urn (or la_code "
                "and school_estab)"
            )
        return self


class AbsenceThresholdCrossedPayload(ChildFact):
    school_urn: URN
    rule: AbsenceRule
    first_absent_date: date
    last_absent_date: date
    school_days: Annotated[int, Field(ge=1, le=400)]
    percentage: Annotated[float | None, Field(ge=0, le=100)] = None

    @model_validator(mode="after")
    def _dates_ordered(self) -> AbsenceThresholdCrossedPayload:
        if self.last_absent_date < self.first_absent_date:
            raise ValueError("last_absent_date is before first_absent_date")
        return self


class AbsenceThresholdRetractedPayload(ChildFact):
    """A corrected mark undid a crossing: the earlier event named here no longer holds."""

    school_urn: URN
    rule: AbsenceRule
    retracts_event_id: str


class ExclusionIssuedPayload(ChildFact):
    school_urn: URN
    exclusion_type: ExclusionType
    start_date: date
    school_days: Annotated[int | None, Field(ge=1, le=45)] = None  # suspensions are capped at 45 a year

    @model_validator(mode="after")
    def _suspension_length(self) -> ExclusionIssuedPayload:
        if self.exclusion_type == ExclusionType.SUSPENSION and self.school_days is None:
            raise ValueError("a suspension needs school_days")
        if self.exclusion_type == ExclusionType.PERMANENT and self.school_days is not None:
            raise ValueError("a permanent exclusion has no school_days")
        return self


class PlaceOfferedPayload(ChildFact):
    provision_type: ProvisionType
    school_urn: URN | None = None
    offered_on: date
    expected_start: date | None = None
    fair_access: StrictBool = False


class ProvisionStartedPayload(ChildFact):
    """place-accepted / provision-started: the child is in education again."""

    provision_type: ProvisionType
    school_urn: URN | None = None
    start_date: date
    hours_per_week: Annotated[float | None, Field(ge=0, le=40)] = None
    full_time: StrictBool = True


class ChildLocatedPayload(ChildFact):
    located_on: date
    la_code: LACode
    in_education: StrictBool = False
    # Where: without a school the education is not confirmed, and the case waits for a registration.
    school_urn: URN | None = None
    reason: StatedReason = None


class WhereaboutsUnknownPayload(ChildFact):
    since: date
    enquiries_made: list[EnquiryType] = Field(default_factory=list)


class HomeEducationNotifiedPayload(ChildFact):
    school_urn: URN | None = None
    notified_on: date
    special_school: StrictBool = False
    la_consent_given: StrictBool | None = None
    ehe_reason: Annotated[
        EHEReason | None, Field(description="The parent's primary reason (DfE EHE return breakdown)")
    ] = None

    @model_validator(mode="after")
    def _special_school_consent(self) -> HomeEducationNotifiedPayload:
        if self.special_school and self.la_consent_given is None:
            raise ValueError("deregistering from a special school needs la_consent_given (LA consent)")
        return self


class MovedOutOfAreaPayload(ChildFact):
    new_la_code: DestinationLACode
    moved_on: date
    new_school_urn: URN | None = None
    # Set by tracking on a handover: the LA that handed the child over, which keeps watching until this LA
    # confirms it has the child.
    from_la_code: LACode | None = None


class MovedAbroadPayload(ChildFact):
    country: Annotated[str, Field(min_length=2, max_length=2, pattern=r"^[A-Z]{2}$")]
    moved_on: date
    confirmed: StrictBool = False


class ReferralReceivedPayload(ChildFact):
    referrer_type: ReferrerType
    referrer_organisation: Annotated[str | None, Field(max_length=200)] = None
    concern: FreeText
    reason: StatedReason = None


class EnquiryRecordedPayload(ChildFact):
    enquiry_type: EnquiryType
    outcome: EnquiryOutcome
    note: FreeText | None = None
    reason: StatedReason = None


class SocialCareStatusChangedPayload(ChildFact):
    status: SocialCareStatus
    has_social_worker: StrictBool
    effective_from: date


class HomeEducationUnsuitablePayload(ChildFact):
    """The LA assessed the home education as unsuitable: the child is missing education (DfE EHE guidance)."""

    assessed_on: date


class HomeEducationEndedPayload(ChildFact):
    """Home education stopped; a named school means a transfer to wait for, none means missing education."""

    ended_on: date
    new_school_urn: URN | None = None


class ReviewDateSetPayload(ChildFact):
    """The LA sets when it will next look at a monitored case (home education, part-time provision)."""

    review_on: date


class HandoverConfirmedPayload(ChildFact):
    """The LA a child was handed over to has the child. Sent by tracking for an LA on this deployment, or by
    the origin LA's team for one outside it (after contacting it)."""

    origin_la_code: LACode
    accepting_la_code: LACode
    how: HandoverConfirmation
    confirmed_on: date
    school_urn: URN | None = None

    @model_validator(mode="after")
    def _registered_names_school(self) -> HandoverConfirmedPayload:
        if self.how == HandoverConfirmation.REGISTERED and not self.school_urn:
            raise ValueError("a confirmation by registration needs school_urn")
        if self.origin_la_code == self.accepting_la_code:
            raise ValueError("origin_la_code and accepting_la_code must differ")
        return self


# What each outcome must name, so a closed case always says where the child's education is.
OUTCOME_NEEDS: dict[CaseOutcome, str] = {
    CaseOutcome.SCHOOL: "school_urn",
    CaseOutcome.PROVISION: "provision_type",
    CaseOutcome.OTHER_LA: "la_code",
    CaseOutcome.ABROAD: "country",
    CaseOutcome.OUT_OF_SCOPE: "deletion_ground",
}
OUT_OF_SCOPE_GROUNDS = frozenset(
    {DeletionGround.DETAINED, DeletionGround.DIED, DeletionGround.OVER_COMPULSORY_AGE}
)


class CaseOutcomeRecordedPayload(ChildFact):
    """A person closes the case with where the child's education is confirmed."""

    outcome: CaseOutcome
    recorded_on: date
    school_urn: URN | None = None
    provision_type: ProvisionType | None = None
    la_code: LACode | None = None
    country: Annotated[str | None, Field(min_length=2, max_length=2, pattern=r"^[A-Z]{2}$")] = None
    deletion_ground: DeletionGround | None = None

    @model_validator(mode="after")
    def _names_the_education(self) -> CaseOutcomeRecordedPayload:
        needed = OUTCOME_NEEDS.get(self.outcome)
        if needed and getattr(self, needed) is None:
            raise ValueError(f"outcome {self.outcome.value} needs {needed}")
        if self.outcome == CaseOutcome.OUT_OF_SCOPE and self.deletion_ground not in OUT_OF_SCOPE_GROUNDS:
            raise ValueError("out_of_scope needs deletion_ground j (detained), k (died) or l (over age)")
        if self.country == "GB":
            raise ValueError("confirmed_abroad needs a country other than GB")
        return self


class FairAccessReferredPayload(ChildFact):
    """The LA agreed that the child will be considered under its fair access protocol: from that day a school
    place must be allocated within 20 school days (School Admissions Code 2021, section 3)."""

    agreed_on: date


class SicknessAbsenceNotifiedPayload(ChildFact):
    """The school's notice that a pupil WILL miss 15 school days or more, consecutive or cumulative, through
    sickness (SI 2024/208 reg 13 sickness return), sent when that becomes clear, not after the days are
    missed: the LA must then arrange suitable education (s.19 Education Act 1996)."""

    school_urn: URN
    first_absent_date: date
    expected_school_days: Annotated[
        int, Field(ge=15, le=400, description="School days the pupil is expected to miss in all")
    ]
    cumulative: StrictBool = Field(
        default=False, description="Recurring absence adding up, not one continuous spell"
    )
    expected_return_date: date | None = None

    @model_validator(mode="after")
    def _return_after_start(self) -> SicknessAbsenceNotifiedPayload:
        if self.expected_return_date is not None and self.expected_return_date <= self.first_absent_date:
            raise ValueError("expected_return_date must be after first_absent_date")
        return self


# --- The register of children not in school (Education Act 1996 s.436B-436G) ---------------------------
Hours = Annotated[float, Field(ge=0, le=60, description="Hours a week")]
Address = Annotated[str, Field(min_length=1, max_length=300)]


class Parent(StrictModel):
    """s.436C(1)(b)-(d): each parent's name and home address, whether they educate the child, and for how
    long."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    home_address: Address
    provides_education: StrictBool = False
    hours_per_week_educating: Hours | None = None


class EducationProvider(StrictModel):
    """s.436C(1)(e): a person or organisation other than a parent providing the child's education."""

    name: Annotated[str, Field(min_length=1, max_length=200)]
    address: Address | None = None
    provider_type: ProviderType
    place_address: Address | None = Field(
        default=None, description="Where the education is provided, when different from the address"
    )
    website_or_email: Annotated[str | None, Field(max_length=300)] = Field(
        default=None, description="For education provided virtually"
    )
    hours_per_week: Hours | None = None
    hours_without_parent: Hours | None = Field(
        default=None, description="Of hours_per_week, the time without any parent present"
    )


class NotInSchoolNoticePayload(ChildFact):
    """A parent's notice (s.436D): the child is eligible for the LA's register of children not in school,
    with the information s.436C(1)(a)-(e) asks of the parent. The child's home address is ``child.address``
    (and postcode)."""

    notified_on: date
    arrangement: EducationArrangement
    parents: Annotated[list[Parent], Field(min_length=1, max_length=6)]
    providers: Annotated[list[EducationProvider], Field(max_length=20)] = Field(default_factory=list)
    school_urn: URN | None = Field(
        default=None,
        description="The school the child is registered at (registered_educated_elsewhere) or left",
    )
    ehe_reason: EHEReason | None = None

    @model_validator(mode="after")
    def _complete(self) -> NotInSchoolNoticePayload:
        if not self.child.address:
            raise ValueError("a parent's notice needs the child's home address (child.address), s.436C(1)(a)")
        if self.arrangement == EducationArrangement.REGISTERED_EDUCATED_ELSEWHERE and not self.school_urn:
            raise ValueError("registered_educated_elsewhere needs school_urn (the school the child is on)")
        if self.arrangement == EducationArrangement.OTHERWISE_THAN_AT_SCHOOL and not self.providers:
            raise ValueError("otherwise_than_at_school needs at least one provider")
        return self


class EducationProviderReturnPayload(ChildFact):
    """A provider's return (s.436E): what it provides the child, or that it stopped."""

    returned_on: date
    provider: EducationProvider
    ceased: StrictBool = Field(default=False, description="The provider no longer educates the child")


class RegisterEntryRecordedPayload(ChildFact):
    """A caseworker's entry or review of the child's register entry: the LA's view of the education, the next
    review and what it has learnt. Unknown or unsuitable education makes (or keeps) a case."""

    recorded_on: date
    suitability: EducationSuitability
    review_on: date | None = None
    arrangement: EducationArrangement | None = None
    parents: Annotated[list[Parent], Field(max_length=6)] = Field(default_factory=list)
    providers: Annotated[list[EducationProvider], Field(max_length=20)] = Field(default_factory=list)
    ehe_reason: EHEReason | None = None
    note: FreeText | None = None

    @model_validator(mode="after")
    def _review_after(self) -> RegisterEntryRecordedPayload:
        if self.review_on is not None and self.review_on < self.recorded_on:
            raise ValueError("review_on must not be before recorded_on")
        return self


class PupilRegistered(InboundEnvelope):
    event_type: Literal["pupil-registered"] = "pupil-registered"
    payload: PupilRegisteredPayload


class PupilLeftRoll(InboundEnvelope):
    event_type: Literal["pupil-left-roll"] = "pupil-left-roll"
    payload: PupilLeftRollPayload


class AbsenceThresholdCrossed(InboundEnvelope):
    event_type: Literal["absence-threshold-crossed"] = "absence-threshold-crossed"
    payload: AbsenceThresholdCrossedPayload


class AbsenceThresholdRetracted(InboundEnvelope):
    event_type: Literal["absence-threshold-retracted"] = "absence-threshold-retracted"
    payload: AbsenceThresholdRetractedPayload


class ExclusionIssued(InboundEnvelope):
    event_type: Literal["exclusion-issued"] = "exclusion-issued"
    payload: ExclusionIssuedPayload


class PlaceOffered(InboundEnvelope):
    event_type: Literal["place-offered"] = "place-offered"
    payload: PlaceOfferedPayload


class ProvisionStarted(InboundEnvelope):
    event_type: Literal["provision-started"] = "provision-started"
    payload: ProvisionStartedPayload


class ChildLocated(InboundEnvelope):
    event_type: Literal["child-located"] = "child-located"
    payload: ChildLocatedPayload


class WhereaboutsUnknown(InboundEnvelope):
    event_type: Literal["whereabouts-unknown"] = "whereabouts-unknown"
    payload: WhereaboutsUnknownPayload


class HomeEducationNotified(InboundEnvelope):
    event_type: Literal["home-education-notified"] = "home-education-notified"
    payload: HomeEducationNotifiedPayload


class MovedOutOfArea(InboundEnvelope):
    event_type: Literal["moved-out-of-area"] = "moved-out-of-area"
    payload: MovedOutOfAreaPayload


class MovedAbroad(InboundEnvelope):
    event_type: Literal["moved-abroad"] = "moved-abroad"
    payload: MovedAbroadPayload


class ReferralReceived(InboundEnvelope):
    event_type: Literal["referral-received"] = "referral-received"
    payload: ReferralReceivedPayload


class EnquiryRecorded(InboundEnvelope):
    event_type: Literal["enquiry-recorded"] = "enquiry-recorded"
    payload: EnquiryRecordedPayload


class SocialCareStatusChanged(InboundEnvelope):
    event_type: Literal["social-care-status-changed"] = "social-care-status-changed"
    payload: SocialCareStatusChangedPayload


class HomeEducationUnsuitable(InboundEnvelope):
    event_type: Literal["home-education-unsuitable"] = "home-education-unsuitable"
    payload: HomeEducationUnsuitablePayload


class HomeEducationEnded(InboundEnvelope):
    event_type: Literal["home-education-ended"] = "home-education-ended"
    payload: HomeEducationEndedPayload


class ReviewDateSet(InboundEnvelope):
    event_type: Literal["review-date-set"] = "review-date-set"
    payload: ReviewDateSetPayload


class HandoverConfirmed(InboundEnvelope):
    event_type: Literal["handover-confirmed"] = "handover-confirmed"
    payload: HandoverConfirmedPayload


class CaseOutcomeRecorded(InboundEnvelope):
    event_type: Literal["case-outcome-recorded"] = "case-outcome-recorded"
    payload: CaseOutcomeRecordedPayload


class FairAccessReferred(InboundEnvelope):
    event_type: Literal["fair-access-referred"] = "fair-access-referred"
    payload: FairAccessReferredPayload


class SicknessAbsenceNotified(InboundEnvelope):
    event_type: Literal["sickness-absence-notified"] = "sickness-absence-notified"
    payload: SicknessAbsenceNotifiedPayload


class NotInSchoolNotice(InboundEnvelope):
    event_type: Literal["not-in-school-notice"] = "not-in-school-notice"
    payload: NotInSchoolNoticePayload


class EducationProviderReturn(InboundEnvelope):
    event_type: Literal["education-provider-return"] = "education-provider-return"
    payload: EducationProviderReturnPayload


class RegisterEntryRecorded(InboundEnvelope):
    event_type: Literal["register-entry-recorded"] = "register-entry-recorded"
    payload: RegisterEntryRecordedPayload


INBOUND_EVENT_CLASSES: tuple[type[Envelope], ...] = (
    PupilRegistered,
    PupilLeftRoll,
    AbsenceThresholdCrossed,
    AbsenceThresholdRetracted,
    ExclusionIssued,
    PlaceOffered,
    ProvisionStarted,
    ChildLocated,
    WhereaboutsUnknown,
    HomeEducationNotified,
    MovedOutOfArea,
    MovedAbroad,
    ReferralReceived,
    EnquiryRecorded,
    SocialCareStatusChanged,
    SicknessAbsenceNotified,
    FairAccessReferred,
    HomeEducationUnsuitable,
    HomeEducationEnded,
    ReviewDateSet,
    HandoverConfirmed,
    CaseOutcomeRecorded,
    NotInSchoolNotice,
    EducationProviderReturn,
    RegisterEntryRecorded,
)
