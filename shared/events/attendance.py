"""Attendance session marks (cme.attendance.v1): one register mark of one pupil for one session.

Codes are the national attendance and absence codes in force since 19 August 2024 (School Attendance (Pupil
Registration) (England) Regulations 2024; DfE "Working together to improve school attendance", August 2024).
The envelope's ``occurred_at`` is when the school recorded (or last changed) the mark in its register: a
correction is a new mark for the same pupil, school, date and session with a later ``occurred_at``; the
latest one wins whatever order they arrive in (``version``, the MIS's own edit counter, breaks a tie within
the same second).
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, model_validator

from shared.events.envelope import URN, InboundEnvelope, StrictModel
from shared.events.inbound import UPN


class AttendanceCode(StrEnum):
    """The 2024 national attendance and absence codes (the value is the code as written in the register)."""

    # Present
    PRESENT_AM = "/"
    PRESENT_PM = "\\"
    LATE_BEFORE_REGISTER_CLOSED = "L"
    # Attending a place other than the school (approved educational activity)
    LA_ARRANGED_PROVISION = "K"
    EDUCATIONAL_VISIT = "V"
    SPORTING_ACTIVITY = "P"
    WORK_EXPERIENCE = "W"
    OTHER_APPROVED_ACTIVITY = "B"
    DUAL_REGISTERED_ELSEWHERE = "D"
    # Absent: leave of absence (authorised)
    REGULATED_PERFORMANCE = "C1"
    MEDICAL_DENTAL = "M"
    INTERVIEW = "J1"
    STUDY_LEAVE = "S"
    NOT_COMPULSORY_AGE = "X"
    PART_TIME_TIMETABLE = "C2"
    EXCEPTIONAL_CIRCUMSTANCES = "C"
    # Absent: other authorised reasons
    MOBILE_CHILD_TRAVELLING = "T"
    RELIGIOUS_OBSERVANCE = "R"
    ILLNESS = "I"
    EXCLUDED_NO_PROVISION = "E"
    # Absent: unable to attend because of an unavoidable cause
    NO_ACCESS_ARRANGEMENTS = "Q"
    TRANSPORT_NOT_AVAILABLE = "Y1"
    WIDESPREAD_TRAVEL_DISRUPTION = "Y2"
    PART_OF_PREMISES_CLOSED = "Y3"
    WHOLE_SCHOOL_UNEXPECTEDLY_CLOSED = "Y4"
    CRIMINAL_JUSTICE_DETENTION = "Y5"
    PUBLIC_HEALTH_GUIDANCE = "Y6"
    OTHER_UNAVOIDABLE_CAUSE = "Y7"
    # Absent: unauthorised
    HOLIDAY_NOT_AUTHORISED = "G"
    REASON_NOT_YET_PROVIDED = "N"
    OTHER_UNAUTHORISED = "O"
    LATE_AFTER_REGISTER_CLOSED = "U"
    # Administrative
    PROSPECTIVE_PUPIL = "Z"
    SCHOOL_CLOSED = "#"


Session = Literal["AM", "PM"]


class AttendanceMarkPayload(StrictModel):
    upn: UPN
    school_urn: URN
    date: date
    session: Session
    code: AttendanceCode
    version: Annotated[int, Field(ge=0, description="The MIS's edit counter for this mark; breaks ties")] = 0


class AttendanceMark(InboundEnvelope):
    """A session mark; ``source`` names the school's LA (and the school, which must match the payload's)."""

    event_type: Literal["attendance-mark"] = "attendance-mark"
    payload: AttendanceMarkPayload

    @model_validator(mode="after")
    def _school_matches_source(self) -> AttendanceMark:
        if self.source.school_urn is not None and self.source.school_urn != self.payload.school_urn:
            raise ValueError("payload.school_urn differs from source.school_urn")
        return self


ATTENDANCE_EVENT_CLASSES: tuple[type[InboundEnvelope], ...] = (AttendanceMark,)
