"""Absence-threshold rules over realistic mark sequences, on the shipped England default calendar (LA 801)."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, time, timedelta

import pytest

from devtools.samples import make_upn
from services.attendance.codes import CODE_BYTE
from services.attendance.rules import AttendanceRules
from services.attendance.state import AttendanceEngine, PupilAttendance, SessionMark
from shared.events.attendance import AttendanceCode
from shared.events.envelope import Envelope
from shared.events.inbound import AbsenceThresholdCrossed, AbsenceThresholdRetracted
from shared.events.vocab import AbsenceRule
from shared.school_calendar import CalendarRegistry

LA = "801"
URN = "108000"
UPN = make_upn(LA, 2000, 14, 1)
CALENDARS = CalendarRegistry()
CAL = CALENDARS.calendar_for(LA)
RULES = AttendanceRules()

UNAUTH = AbsenceRule.UNAUTHORISED_10_DAYS
GNO = AbsenceRule.CONTINUOUS_GNO_20_DAYS
SICK = AbsenceRule.SICKNESS_15_DAYS
PERSISTENT = AbsenceRule.PERSISTENT_10_PERCENT
SEVERE = AbsenceRule.SEVERE_50_PERCENT


class Register:
    """One pupil's register as a school's MIS would send it, fed straight into the engine."""

    def __init__(self, rules: AttendanceRules = RULES, upn: str = UPN) -> None:
        self.engine = AttendanceEngine(CALENDARS, rules)
        self.state = PupilAttendance()
        self.upn = upn
        self.events: list[Envelope] = []

    def mark(
        self, d: date, session: str, code: str, recorded: datetime | None = None, urn: str = URN
    ) -> tuple[str, list[Envelope]]:
        at = recorded or datetime.combine(d, time(9 if session == "AM" else 13, 30), tzinfo=UTC)
        m = SessionMark(
            self.upn, urn, LA, d, session == "PM", CODE_BYTE[AttendanceCode(code)], at, 0, uuid.uuid4()
        )
        outcome = self.engine.apply(self.state, m)
        self.events.extend(outcome.events)
        return outcome.status, outcome.events

    def day(
        self, d: date, am: str, pm: str | None = None, recorded: datetime | None = None
    ) -> list[Envelope]:
        out = self.mark(d, "AM", am, recorded)[1]
        out += self.mark(d, "PM", pm if pm is not None else ("\\" if am == "/" else am), recorded)[1]
        return out

    def days(self, first: date, n: int, am: str, pm: str | None = None) -> list[Envelope]:
        out: list[Envelope] = []
        for d in school_days(first, n):
            out += self.day(d, am, pm)
        return out


def school_days(first: date, n: int) -> list[date]:
    """``n`` school days from ``first`` (or the next school day) on the LA calendar."""
    out = [CAL.add_school_days(first, 0)]
    while len(out) < n:
        out.append(CAL.next_school_day(out[-1]))
    return out


def crossings(events: list[Envelope], rule: AbsenceRule | None = None) -> list[AbsenceThresholdCrossed]:
    return [
        e
        for e in events
        if isinstance(e, AbsenceThresholdCrossed) and (rule is None or e.payload.rule == rule)
    ]


def retractions(events: list[Envelope], rule: AbsenceRule | None = None) -> list[AbsenceThresholdRetracted]:
    return [
        e
        for e in events
        if isinstance(e, AbsenceThresholdRetracted) and (rule is None or e.payload.rule == rule)
    ]


# Autumn 2024 in the default calendar: 2 Sep - 20 Dec, half term 28 Oct - 1 Nov.
MON_23_SEP = date(2024, 9, 23)


def test_ten_unauthorised_days_across_a_weekend_cross_once() -> None:
    reg = Register()
    nine = reg.days(MON_23_SEP, 9, "N")
    assert crossings(nine) == []
    tenth = reg.day(date(2024, 10, 4), "O")
    [crossed] = crossings(tenth)
    p = crossed.payload
    assert (p.rule, p.first_absent_date, p.last_absent_date, p.school_days) == (
        UNAUTH, MON_23_SEP, date(2024, 10, 4), 10,
    )  # fmt: skip
    assert p.child.upn == UPN and p.school_urn == URN
    assert crossed.source.system == "cme-attendance" and crossed.source.la_code == LA
    assert reg.engine.crossing_id(UPN, URN, RULES.for_la(LA)[0], MON_23_SEP, 0) == crossed.event_id
    assert crossings(reg.days(date(2024, 10, 7), 5, "N"), UNAUTH) == []  # once per run


def test_a_pupil_who_returns_on_day_nine_resets_the_run() -> None:
    reg = Register()
    reg.days(MON_23_SEP, 8, "N")
    reg.day(date(2024, 10, 3), "/")  # back in school on day 9
    reg.days(date(2024, 10, 4), 9, "N")
    assert crossings(reg.events) == []
    # ... but a late arrival after the register closed (U) is unauthorised and keeps the run going.
    reg.day(date(2024, 10, 17), "U")
    assert [c.payload.first_absent_date for c in crossings(reg.events, UNAUTH)] == [date(2024, 10, 4)]


def test_half_term_neither_breaks_nor_extends_the_run() -> None:
    reg = Register()
    reg.days(date(2024, 10, 21), 5, "N")  # the week before half term
    assert reg.mark(date(2024, 10, 28), "AM", "N")[0] == "not_school_day"  # a stray mark in half term
    events = reg.days(date(2024, 11, 4), 5, "N")
    [crossed] = crossings(events, UNAUTH)
    assert crossed.payload.first_absent_date == date(2024, 10, 21)
    assert crossed.payload.last_absent_date == date(2024, 11, 8)
    assert crossed.payload.school_days == 10


def test_a_bank_holiday_is_not_a_school_day() -> None:
    reg = Register()
    # Summer 2025: Monday 5 May is the early May bank holiday.
    reg.days(date(2025, 4, 28), 5, "G")  # 28 Apr - 2 May
    assert reg.mark(date(2025, 5, 5), "AM", "G")[0] == "not_school_day"
    assert reg.mark(date(2025, 5, 3), "AM", "G")[0] == "not_school_day"  # a Saturday
    reg.days(date(2025, 5, 6), 4, "G")  # 6-9 May: 9 school days so far
    assert crossings(reg.events) == []
    [crossed] = crossings(reg.day(date(2025, 5, 12), "G"), UNAUTH)
    assert crossed.payload.school_days == 10 and crossed.payload.first_absent_date == date(2025, 4, 28)


def test_twenty_days_of_only_g_n_o_is_the_deletion_ground() -> None:
    reg = Register()
    codes = ["N", "O", "G", "O"] * 5
    for d, code in zip(school_days(date(2025, 1, 6), 20), codes, strict=True):
        reg.day(d, code)
    assert len(crossings(reg.events, UNAUTH)) == 1
    [gno] = crossings(reg.events, GNO)
    # 6 January 2025 is an INSET day on the default calendar: the run starts on the 7th.
    assert gno.payload.school_days == 20 and gno.payload.first_absent_date == date(2025, 1, 7)
    assert gno.payload.last_absent_date == school_days(date(2025, 1, 6), 20)[-1]


def test_a_u_mark_breaks_the_deletion_run_but_not_the_unauthorised_one() -> None:
    reg = Register()
    days = school_days(date(2025, 1, 6), 21)
    for i, d in enumerate(days):
        reg.day(d, "U" if i == 12 else "O")
    assert crossings(reg.events, GNO) == []
    assert len(crossings(reg.events, UNAUTH)) == 1


def test_x_and_school_closed_days_neither_break_nor_count() -> None:
    reg = Register()
    days = school_days(MON_23_SEP, 12)
    for i, d in enumerate(days):
        reg.day(d, "#" if i in (3, 4) else "N")
    [crossed] = crossings(reg.events, UNAUTH)
    assert crossed.payload.school_days == 10
    assert crossed.payload.last_absent_date == days[11]


def test_dual_registration_d_is_not_an_absence() -> None:
    reg = Register()
    reg.days(MON_23_SEP, 5, "N")
    reg.days(date(2024, 9, 30), 3, "D")  # attending the other school
    reg.days(date(2024, 10, 3), 6, "N")
    assert crossings(reg.events, UNAUTH) == []
    # A pupil at the other school all term: D sessions are not possible sessions, so no percentage either.
    dual = Register()
    dual.days(date(2024, 9, 2), 40, "D")
    assert dual.events == []


def test_sickness_counts_fifteen_days_cumulatively_with_half_days() -> None:
    reg = Register()
    reg.days(date(2024, 9, 2), 5, "I")
    reg.days(date(2024, 9, 9), 5, "/")
    reg.days(date(2024, 9, 16), 9, "I")  # 14 days of illness so far
    reg.day(date(2024, 9, 27), "I", "\\")  # half a day: 14.5
    assert crossings(reg.events, SICK) == []
    [sick] = crossings(reg.day(date(2024, 9, 30), "/", "I"), SICK)  # 15
    assert sick.payload.first_absent_date == date(2024, 9, 4)  # 2 and 3 Sep are INSET days
    assert sick.payload.last_absent_date == date(2024, 9, 30)
    assert sick.payload.school_days == 15
    assert crossings(reg.days(date(2024, 10, 1), 3, "I"), SICK) == []  # once a school year


def test_correcting_n_to_an_authorised_code_retracts_the_crossing() -> None:
    reg = Register()
    reg.days(MON_23_SEP, 10, "N")
    [crossed] = crossings(reg.events, UNAUTH)
    # Within 5 school days the school learns day 3 was a medical appointment and replaces the N.
    later = datetime(2024, 10, 7, 10, tzinfo=UTC)
    events = reg.day(date(2024, 9, 25), "M", recorded=later)
    [retracted] = retractions(events, UNAUTH)
    assert retracted.payload.retracts_event_id == str(crossed.event_id)
    assert crossings(events) == []  # 2 + 7 days either side: neither run reaches 10


def test_correcting_n_to_present_retracts_and_a_recrossing_gets_a_new_id() -> None:
    reg = Register()
    reg.days(MON_23_SEP, 10, "N")
    [first] = crossings(reg.events, UNAUTH)
    back = reg.day(MON_23_SEP + timedelta(days=1), "/", recorded=datetime(2024, 10, 7, 9, tzinfo=UTC))
    assert [r.payload.retracts_event_id for r in retractions(back)] == [str(first.event_id)]
    # The school corrects again: the N stood after all. The crossing holds again, under a new event_id.
    again = reg.day(MON_23_SEP + timedelta(days=1), "N", recorded=datetime(2024, 10, 8, 9, tzinfo=UTC))
    [second] = crossings(again, UNAUTH)
    assert second.event_id != first.event_id
    assert second.payload.first_absent_date == first.payload.first_absent_date


def test_a_correction_that_moves_the_start_retracts_and_re_emits() -> None:
    reg = Register()
    reg.days(MON_23_SEP, 12, "N")
    [first] = crossings(reg.events, UNAUTH)
    events = reg.day(MON_23_SEP, "I", recorded=datetime(2024, 10, 9, 9, tzinfo=UTC))
    [retracted] = retractions(events, UNAUTH)
    [moved] = crossings(events, UNAUTH)
    assert retracted.payload.retracts_event_id == str(first.event_id)
    assert moved.payload.first_absent_date == date(2024, 9, 24) and moved.payload.school_days == 11


def test_an_older_version_arriving_late_is_ignored() -> None:
    reg = Register()
    d3 = date(2024, 9, 25)
    # The correction (recorded on 30 Sep) reaches us before the original N (recorded on the day).
    reg.day(d3, "I", recorded=datetime(2024, 9, 30, 9, tzinfo=UTC))
    for d in school_days(MON_23_SEP, 10):
        if d != d3:
            reg.day(d, "N")
    assert reg.mark(d3, "AM", "N")[0] == "stale"
    assert reg.mark(d3, "PM", "N")[0] == "stale"
    assert crossings(reg.events, UNAUTH) == []


def test_out_of_order_arrival_crosses_once_without_churn_and_replays_identically() -> None:
    run = school_days(MON_23_SEP, 14)
    marks = [(d, s) for d in run for s in ("AM", "PM")]
    random.Random(7).shuffle(marks)

    def feed() -> Register:
        reg = Register()
        for d, s in marks:
            reg.mark(d, s, "N")
        return reg

    first, again = feed(), feed()
    [crossed] = crossings(first.events, UNAUTH)
    # Days that arrive late extend the run backwards; the crossing already out stands (no retract + re-emit).
    assert retractions(first.events) == []
    assert run[0] <= crossed.payload.first_absent_date <= run[4]
    assert [e.event_id for e in again.events] == [e.event_id for e in first.events]  # a replay: same ids


def test_persistent_absence_fires_once_after_the_minimum_sessions() -> None:
    reg = Register()
    days = school_days(date(2024, 9, 2), 30)
    for i, d in enumerate(days):
        reg.day(d, "/", "O" if i % 4 == 0 else "\\")  # 1 session in 8 absent: 12.5%
        fired = crossings(reg.events, PERSISTENT)
        if i < 19:  # fewer than 40 possible sessions: too early to say
            assert fired == [], i
    [persistent] = crossings(reg.events, PERSISTENT)
    assert persistent.payload.first_absent_date == date(2024, 9, 4)  # the term's first school day (INSET 2-3)
    assert persistent.payload.last_absent_date == days[19]
    assert persistent.payload.percentage == 12.5
    assert crossings(reg.events, SEVERE) == []
    # Attending every session afterwards brings the share under 10%, which does not withdraw the crossing.
    reg.days(date(2024, 10, 14), 20, "/")
    assert retractions(reg.events) == []


def test_severe_absence_and_its_retraction_when_corrections_show_it_never_held() -> None:
    reg = Register()
    days = school_days(date(2025, 1, 6), 20)
    for i, d in enumerate(days):
        reg.day(d, "I" if i % 2 == 0 else "/")  # every other day ill: 50%
    [severe] = crossings(reg.events, SEVERE)
    assert severe.payload.percentage == 50.0
    # The school corrects one illness day to an educational visit (V): 45% at every point of the term.
    events = reg.day(days[0], "V", recorded=datetime(2025, 2, 7, 12, tzinfo=UTC))
    assert [r.payload.retracts_event_id for r in retractions(events, SEVERE)] == [str(severe.event_id)]
    assert retractions(events, PERSISTENT) == []


def test_replaying_into_a_fresh_state_re_emits_identical_ids() -> None:
    def run() -> list[uuid.UUID]:
        reg = Register()
        reg.days(MON_23_SEP, 22, "O")
        reg.day(MON_23_SEP, "/", recorded=datetime(2024, 10, 30, tzinfo=UTC))
        return [e.event_id for e in reg.events]

    first, second = run(), run()
    assert first == second and len(first) >= 3


def test_state_round_trips_through_bytes_and_carries_on() -> None:
    reg = Register()
    reg.days(MON_23_SEP, 9, "N")
    reg.day(date(2024, 10, 4), "N", "/")  # a half day: still counts as a day of the run
    blob = reg.state.to_bytes()
    assert len(blob) < 1000  # 2 bytes + 8 bytes of keys per weekday so far, plus a small header
    reg.state = PupilAttendance.from_bytes(blob)
    assert reg.state.to_bytes() == blob
    assert len(crossings(reg.events, UNAUTH)) == 1
    assert crossings(reg.day(date(2024, 10, 7), "N"), UNAUTH) == []  # the restored state knows it fired


def test_two_schools_are_counted_separately() -> None:
    reg = Register()
    for d in school_days(MON_23_SEP, 10):
        reg.mark(d, "AM", "N")
        reg.mark(d, "PM", "N", urn="108001")
    urns = sorted(c.payload.school_urn for c in crossings(reg.events, UNAUTH))
    assert urns == ["108000", "108001"]
    assert len({c.event_id for c in crossings(reg.events, UNAUTH)}) == 2


@pytest.mark.parametrize("code", ["C", "C1", "C2", "M", "J1", "S", "T", "R", "E", "Y1", "Y7", "Q", "K", "B"])
def test_any_non_unauthorised_code_ends_an_unauthorised_run(code: str) -> None:
    reg = Register()
    reg.days(MON_23_SEP, 5, "N")
    reg.day(date(2024, 9, 30), code)
    reg.days(date(2024, 10, 1), 9, "N")
    assert crossings(reg.events, UNAUTH) == []
