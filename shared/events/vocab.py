"""Controlled vocabularies: the statutory and DfE code lists events use."""

from __future__ import annotations

from enum import StrEnum


class DeletionGround(StrEnum):
    """Regulation 9(1) of the School Attendance (Pupil Registration) (England) Regulations 2024."""

    REGISTERED_ELSEWHERE = "a"  # registered at another school
    NOT_CONTINUING_FROM_NURSERY = "b"
    DUAL_REGISTRATION_ENDED = "c"
    ATTENDANCE_ORDER_AMENDED = "d"
    ATTENDANCE_ORDER_REVOKED = "e"
    ELECTIVE_HOME_EDUCATION = "f"  # parent's written notice
    NO_LONGER_WITHIN_REASONABLE_DISTANCE = "g"
    NOT_RETURNED_AFTER_LEAVE = "h"  # 10 school days after authorised leave; joint enquiries
    CONTINUOUS_ABSENCE_20_DAYS = "i"  # only G, N or O marks; joint enquiries
    DETAINED = "j"
    DIED = "k"
    OVER_COMPULSORY_AGE = "l"
    BOARDING_FEES_UNPAID = "m"
    LEFT_INDEPENDENT_SCHOOL = "n"
    PERMANENTLY_EXCLUDED = "o"


# Grounds under which the school and the LA must make reasonable enquiries jointly before deletion.
JOINT_ENQUIRY_GROUNDS = frozenset(
    {DeletionGround.NOT_RETURNED_AFTER_LEAVE, DeletionGround.CONTINUOUS_ABSENCE_20_DAYS}
)


class ExclusionType(StrEnum):
    SUSPENSION = "suspension"
    PERMANENT = "permanent"


class ProvisionType(StrEnum):
    SCHOOL = "school"
    ALTERNATIVE_PROVISION = "alternative_provision"
    PUPIL_REFERRAL_UNIT = "pupil_referral_unit"
    HOSPITAL_EDUCATION = "hospital_education"
    TUITION = "tuition"
    ELECTIVE_HOME_EDUCATION = "elective_home_education"
    OTHER = "other"


class Sex(StrEnum):
    FEMALE = "F"
    MALE = "M"
    UNKNOWN = "U"


class SocialCareStatus(StrEnum):
    NONE = "none"
    CHILD_IN_NEED = "child_in_need"
    CHILD_PROTECTION_PLAN = "child_protection_plan"
    LOOKED_AFTER = "looked_after"
    # A s.47 Children Act 1989 child protection enquiry is under way (no plan yet).
    CHILD_PROTECTION_ENQUIRY = "child_protection_enquiry"


# Under either, a child cannot move into elective home education (Children's Wellbeing and Schools Act 2026).
CHILD_PROTECTION_STATUSES = frozenset(
    {SocialCareStatus.CHILD_PROTECTION_PLAN, SocialCareStatus.CHILD_PROTECTION_ENQUIRY}
)


class Vulnerability(StrEnum):
    SEN_SUPPORT = "sen_support"
    EHCP = "ehcp"
    CHILD_IN_NEED = "child_in_need"
    CHILD_PROTECTION_PLAN = "child_protection_plan"
    LOOKED_AFTER = "looked_after"
    YOUTH_JUSTICE = "youth_justice"
    ARMED_FORCES_FAMILY = "armed_forces_family"
    YOUNG_CARER = "young_carer"
    GYPSY_ROMA_TRAVELLER = "gypsy_roma_traveller"
    PREGNANT_OR_YOUNG_PARENT = "pregnant_or_young_parent"


class MissingReason(StrEnum):
    """Reason categories of LA returns (NCB 2014 categories, DfE CME collection)."""

    AWAITING_PLACE = "awaiting_place"
    WHEREABOUTS_UNKNOWN = "whereabouts_unknown"
    LEFT_LA = "left_la"
    MOVED_ABROAD = "moved_abroad"
    GYPSY_ROMA_TRAVELLER = "gypsy_roma_traveller"
    FAILED_TO_ENROL_OR_TRANSITION = "failed_to_enrol_or_transition"
    ELECTIVE_HOME_EDUCATION = "elective_home_education"
    # Home education the LA has assessed as unsuitable: counted as CME (DfE EHE guidance 2025).
    HOME_EDUCATION_UNSUITABLE = "home_education_unsuitable"
    SEN = "sen"
    HEALTH = "health"
    EXCLUDED = "excluded"
    PREGNANT_OR_YOUNG_PARENT = "pregnant_or_young_parent"
    OTHER = "other"
    NOT_RECORDED = "not_recorded"


class AbsenceRule(StrEnum):
    """Absence thresholds a school or the attendance stream reports."""

    UNAUTHORISED_10_DAYS = "unauthorised_10_consecutive_days"  # reg 13 return
    CONTINUOUS_GNO_20_DAYS = "continuous_gno_20_days"  # deletion ground 9(1)(i)
    SICKNESS_15_DAYS = "sickness_15_days"  # 2024 sickness return
    PERSISTENT_10_PERCENT = "persistent_10_percent"
    SEVERE_50_PERCENT = "severe_50_percent"


class ReferrerType(StrEnum):
    SCHOOL = "school"
    LA_ADMISSIONS = "la_admissions"
    HEALTH = "health"
    POLICE = "police"
    SOCIAL_CARE = "social_care"
    HOUSING = "housing"
    OTHER_LA = "other_la"
    VOLUNTARY_SECTOR = "voluntary_sector"
    MEMBER_OF_PUBLIC = "member_of_public"
    OTHER_AGENCY = "other_agency"


class EnquiryType(StrEnum):
    """Reasonable enquiries from the CME statutory guidance (not a closed list: use OTHER)."""

    PHONE_CONTACT = "phone_contact"
    SIBLINGS_SCHOOLS = "siblings_schools"
    HOME_VISIT = "home_visit"
    LETTER = "letter"
    OTHER_LA = "other_la"
    SCHOOL2SCHOOL = "school2school"
    HOUSING = "housing"
    ADMISSIONS = "admissions"
    HEALTH = "health"
    POLICE = "police"
    CHILDRENS_SOCIAL_CARE = "childrens_social_care"
    YOUTH_JUSTICE = "youth_justice"
    HMRC = "hmrc"
    HOME_OFFICE = "home_office"
    FCDO = "fcdo"
    OTHER = "other"


class EnquiryOutcome(StrEnum):
    NO_RESPONSE = "no_response"
    NOT_LOCATED = "not_located"
    LOCATED = "located"
    INFORMATION_RECEIVED = "information_received"
    NOTE = "note"


class CaseOutcome(StrEnum):
    """Where a closed case's child is confirmed to be educated (or why the child is out of scope). A case
    closes only with one of these; "enquiries inconclusive" is not an outcome."""

    SCHOOL = "school"  # registered at a school: the URN
    PROVISION = "provision"  # full-time provision the LA arranged (AP, tuition, hospital): its type or URN
    HOME_EDUCATION = "registered_home_education"  # the parent's notice, known to the LA
    OTHER_LA = "other_la_accepted"  # another LA confirmed it has the child: its LA code
    ABROAD = "confirmed_abroad"  # confirmed living abroad: the country
    OUT_OF_SCOPE = "out_of_scope"  # a reg 9(1) ground that takes the child out of scope (j, k, l): the letter


class ResolutionReason(StrEnum):
    """Why a person resolved an escalation: a fixed list, audited. Resolving never closes the case (only an
    outcome does), and an open case comes back on the LA's review cadence."""

    ENQUIRIES_CONTINUING = "enquiries_continuing"  # the caseworker is working the case; alerts are not needed
    REFERRED_TO_SOCIAL_CARE = "referred_to_social_care"  # children's social care (MASH) has the concern
    REFERRED_TO_POLICE = "referred_to_police"
    OTHER_LA_CONTACTED = "other_la_contacted"  # waiting for another LA's confirmation
    OUTCOME_BEING_RECORDED = "outcome_being_recorded"  # the child's education is confirmed; outcome to follow
    DUPLICATE_ALERT = "duplicate_alert"  # another alert about the same child covers it
    RAISED_IN_ERROR = "raised_in_error"  # the facts behind the alert were wrong (to be corrected)


class HandoverConfirmation(StrEnum):
    """How a destination LA confirmed a child handed over to it."""

    LOCATED = "located"  # its enquiries found the child
    REGISTERED = "registered"  # the child registered at one of its schools (the URN)
    ACCEPTED = "accepted"  # its caseworker accepted the case
    CONFIRMED_BY_CONTACT = "confirmed_by_contact"  # an LA outside this deployment, confirmed to a person


# --- The register of children not in school (Education Act 1996 s.436B-436G, inserted by the Children's
# Wellbeing and Schools Act 2026 s.38) ------------------------------------------------------------------


class EducationArrangement(StrEnum):
    """How a child on the register is educated, as the parent's notice (s.436D) says."""

    HOME_EDUCATION = "home_education"  # by the parents, with or without other providers (s.436B(5)(a))
    OTHERWISE_THAN_AT_SCHOOL = "otherwise_than_at_school"  # mainly by providers the parents arrange
    # Registered at a school whose proprietor arranged or agreed education elsewhere for some or all of the
    # time (flexi-schooling, off-site provision): s.436B(5)(b). The child stays on that school's roll.
    REGISTERED_EDUCATED_ELSEWHERE = "registered_educated_elsewhere"


class ProviderType(StrEnum):
    """s.436C(1)(e)(ii): a description of the type of each provider of the child's education."""

    INDIVIDUAL_TUTOR = "individual_tutor"
    TUITION_CENTRE = "tuition_centre"
    ONLINE_PROVIDER = "online_provider"
    OUT_OF_SCHOOL_SETTING = "out_of_school_setting"
    ALTERNATIVE_PROVISION = "alternative_provision"
    FURTHER_EDUCATION_COLLEGE = "further_education_college"
    OTHER = "other"


class EducationSuitability(StrEnum):
    """The LA's view of a registered child's education (s.436A, s.437): unknown or unsuitable is a case."""

    SUITABLE = "suitable"
    NOT_YET_ASSESSED = "not_yet_assessed"
    UNKNOWN = "unknown"  # the LA cannot tell what education the child receives
    UNSUITABLE = "unsuitable"  # DfE EHE guidance 2025: counted as children missing education


class EHEReason(StrEnum):
    """Primary reason for elective home education, as the parent gives it: the categories of the DfE EHE
    collection's "primary reason for EHE" breakdown (explore-education-statistics, Elective home education,
    ehe_census.csv), as surveys mirroring the DfE list name them."""

    PHILOSOPHICAL_OR_PREFERENTIAL = "philosophical_or_preferential"
    LIFESTYLE = "lifestyle"
    RELIGIOUS = "religious"
    PHYSICAL_HEALTH = "physical_health"
    MENTAL_HEALTH = "mental_health"
    DISSATISFACTION_WITH_SCHOOL = "dissatisfaction_with_school"
    BULLYING = "bullying"
    SEND_NEEDS_NOT_MET = "send_needs_not_met"
    EXCLUSION_OR_RISK_OF_EXCLUSION = "exclusion_or_risk_of_exclusion"
    NOT_PREFERRED_SCHOOL = "not_preferred_school"
    OTHER = "other"
    UNKNOWN = "unknown"  # the parent gave no reason
