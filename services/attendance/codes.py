"""How each 2024 attendance code counts, and its one-byte encoding in the per-pupil state.

Categories (DfE "Working together to improve school attendance", August 2024, and the school census):

- PRESENT (/, \\, L) and APPROVED (K, V, P, W, B): the pupil attended (off site for APPROVED); possible
  sessions.
- ELSEWHERE (D): dual registered and attending the other school. Not an absence, not a possible session here.
- AUTHORISED (C, C1, C2, M, J1, S, T, R, E) and ILLNESS (I): authorised absence; possible sessions.
- UNAVOIDABLE (Q, Y1-Y7): unable to attend for an unavoidable cause; not a possible session.
- UNAUTHORISED (G, N, O, U): unauthorised absence; possible sessions.
- NOT_COUNTED (X, Z, #): not required to attend, not yet on roll, school closed: neither attendance nor
  absence.
"""

from __future__ import annotations

from enum import IntEnum

from shared.events.attendance import AttendanceCode


class Category(IntEnum):
    PRESENT = 1
    APPROVED = 2
    ELSEWHERE = 3
    AUTHORISED = 4
    ILLNESS = 5
    UNAVOIDABLE = 6
    UNAUTHORISED = 7
    NOT_COUNTED = 8


C = AttendanceCode
CATEGORY: dict[AttendanceCode, Category] = {
    C.PRESENT_AM: Category.PRESENT,
    C.PRESENT_PM: Category.PRESENT,
    C.LATE_BEFORE_REGISTER_CLOSED: Category.PRESENT,
    C.LA_ARRANGED_PROVISION: Category.APPROVED,
    C.EDUCATIONAL_VISIT: Category.APPROVED,
    C.SPORTING_ACTIVITY: Category.APPROVED,
    C.WORK_EXPERIENCE: Category.APPROVED,
    C.OTHER_APPROVED_ACTIVITY: Category.APPROVED,
    C.DUAL_REGISTERED_ELSEWHERE: Category.ELSEWHERE,
    C.REGULATED_PERFORMANCE: Category.AUTHORISED,
    C.MEDICAL_DENTAL: Category.AUTHORISED,
    C.INTERVIEW: Category.AUTHORISED,
    C.STUDY_LEAVE: Category.AUTHORISED,
    C.PART_TIME_TIMETABLE: Category.AUTHORISED,
    C.EXCEPTIONAL_CIRCUMSTANCES: Category.AUTHORISED,
    C.MOBILE_CHILD_TRAVELLING: Category.AUTHORISED,
    C.RELIGIOUS_OBSERVANCE: Category.AUTHORISED,
    C.EXCLUDED_NO_PROVISION: Category.AUTHORISED,
    C.ILLNESS: Category.ILLNESS,
    C.NO_ACCESS_ARRANGEMENTS: Category.UNAVOIDABLE,
    C.TRANSPORT_NOT_AVAILABLE: Category.UNAVOIDABLE,
    C.WIDESPREAD_TRAVEL_DISRUPTION: Category.UNAVOIDABLE,
    C.PART_OF_PREMISES_CLOSED: Category.UNAVOIDABLE,
    C.WHOLE_SCHOOL_UNEXPECTEDLY_CLOSED: Category.UNAVOIDABLE,
    C.CRIMINAL_JUSTICE_DETENTION: Category.UNAVOIDABLE,
    C.PUBLIC_HEALTH_GUIDANCE: Category.UNAVOIDABLE,
    C.OTHER_UNAVOIDABLE_CAUSE: Category.UNAVOIDABLE,
    C.HOLIDAY_NOT_AUTHORISED: Category.UNAUTHORISED,
    C.REASON_NOT_YET_PROVIDED: Category.UNAUTHORISED,
    C.OTHER_UNAUTHORISED: Category.UNAUTHORISED,
    C.LATE_AFTER_REGISTER_CLOSED: Category.UNAUTHORISED,
    C.NOT_COMPULSORY_AGE: Category.NOT_COUNTED,
    C.PROSPECTIVE_PUPIL: Category.NOT_COUNTED,
    C.SCHOOL_CLOSED: Category.NOT_COUNTED,
}
assert set(CATEGORY) == set(AttendanceCode), "every 2024 code needs a category"

ATTENDED = frozenset({Category.PRESENT, Category.APPROVED})
ABSENT = frozenset({Category.AUTHORISED, Category.ILLNESS, Category.UNAUTHORISED})
# Codes a rule may count: absences of any kind (counting a present or neutral code would be a config error).
COUNTABLE_CODES = frozenset(c for c, cat in CATEGORY.items() if cat in ABSENT or cat == Category.UNAVOIDABLE)
NEUTRAL_CODES = frozenset(c for c, cat in CATEGORY.items() if cat == Category.NOT_COUNTED)

# One byte per session in the state: 0 means "no mark yet"; 1.. index this append-only tuple. Never reorder
# or remove an entry: stored state refers to codes by position.
CODE_ORDER: tuple[AttendanceCode, ...] = tuple(AttendanceCode)
CODE_BYTE: dict[AttendanceCode, int] = {code: i + 1 for i, code in enumerate(CODE_ORDER)}
UNMARKED = 0


def translation(mapping: dict[AttendanceCode, int], default: int, unmarked: int) -> bytes:
    """A ``bytes.translate`` table from code bytes to small class values (C speed over a whole year)."""
    table = bytearray([default] * 256)
    table[UNMARKED] = unmarked
    for code, value in mapping.items():
        table[CODE_BYTE[code]] = value
    return bytes(table)
