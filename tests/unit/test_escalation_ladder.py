"""The ladder as pure functions, and every default rule's alerts for a concrete scenario (literal dates)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from services.escalation.ladder import LadderPosition, acknowledgement_stops, advance, rule_due_at
from services.escalation.rules import RuleSet
from shared.events.internal import EscalationAction
from shared.school_calendar import LONDON, CalendarRegistry, SchoolCalendar

LA = "202"
FAR_FUTURE = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    return RuleSet.load()


@pytest.fixture(scope="module")
def cal() -> SchoolCalendar:
    return CalendarRegistry().default


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def end_of_day(d: date) -> datetime:
    """23:59:59 London on ``d``, in UTC (BST moves it to 22:59:59 UTC in summer)."""
    return datetime.combine(d, time(23, 59, 59), tzinfo=LONDON).astimezone(UTC)


# Each default rule, a start (when the state was entered / the event's clock starts) and the alerts an
# unacknowledged escalation sends, checked by hand against the default 2025/26 calendar.
SCENARIOS: dict[str, tuple[datetime, list[tuple[str, datetime]]]] = {
    # Missing on Mon 3 Nov 2025: caseworker at once; +5 school days Mon 10 Nov; +5 more Mon 17 Nov.
    "whereabouts_unknown": (
        utc(2025, 11, 3, 10, 0),
        [
            ("caseworker", utc(2025, 11, 3, 10, 0)),
            ("senior_cme_officer", end_of_day(date(2025, 11, 10))),
            ("childrens_social_care", end_of_day(date(2025, 11, 17))),
        ],
    ),
    "whereabouts_unknown_with_concerns": (
        utc(2025, 11, 3, 10, 0),
        [
            ("caseworker", utc(2025, 11, 3, 10, 0)),
            ("childrens_social_care", utc(2025, 11, 3, 10, 0)),
            ("police", utc(2025, 11, 3, 10, 0)),
            ("senior_cme_officer", end_of_day(date(2025, 11, 4))),
        ],
    ),
    # Friday afternoon: social care at once, senior officer at the end of the next school day (Monday).
    "known_to_social_care_missing_education": (
        utc(2025, 11, 7, 16, 0),
        [
            ("childrens_social_care", utc(2025, 11, 7, 16, 0)),
            ("caseworker", utc(2025, 11, 7, 16, 0)),
            ("senior_cme_officer", end_of_day(date(2025, 11, 10))),
        ],
    ),
    # Hours ignore the calendar: the police 24 hours later, on the Saturday.
    "known_to_social_care_whereabouts_unknown": (
        utc(2025, 11, 7, 16, 0),
        [
            ("childrens_social_care", utc(2025, 11, 7, 16, 0)),
            ("caseworker", utc(2025, 11, 7, 16, 0)),
            ("police", utc(2025, 11, 8, 16, 0)),
        ],
    ),
    # Crosses Christmas: 16-19 Dec are days 1-4; 5 Jan is an INSET day; 6-13 Jan are days 5-10.
    "missing_education_no_outcome": (
        utc(2025, 12, 15, 9, 0),
        [
            ("caseworker", end_of_day(date(2026, 1, 13))),
            ("senior_cme_officer", end_of_day(date(2026, 1, 20))),
            ("childrens_social_care", end_of_day(date(2026, 1, 27))),
        ],
    ),
    # Excluded from Wed 11 Feb 2026 (day 1): 12, 13 Feb, half term, 23, 24 Feb; day 6 is Wed 25 Feb.
    "permanent_exclusion_no_provision": (
        datetime.combine(date(2026, 2, 11), time(0), tzinfo=LONDON),
        [
            ("caseworker", end_of_day(date(2026, 2, 25))),
            ("senior_cme_officer", end_of_day(date(2026, 2, 26))),
        ],
    ),
    # Deleted under ground (i) without joint enquiries on Fri 7 Nov 2025 at 15:00: the caseworker at once;
    # the senior officer 2 school days later (end of Tue 11 Nov).
    "deletion_without_joint_enquiries": (
        utc(2025, 11, 7, 15, 0),
        [
            ("caseworker", utc(2025, 11, 7, 15, 0)),
            ("senior_cme_officer", end_of_day(date(2025, 11, 11))),
        ],
    ),
    # Notice on Fri 7 Nov 2025 that a pupil will miss 15+ days through sickness: the caseworker at the close
    # of that school day; the senior officer 5 school days later (end of Fri 14 Nov).
    "sickness_15_days_provision": (
        utc(2025, 11, 7, 16, 0),
        [
            ("caseworker", end_of_day(date(2025, 11, 7))),
            ("senior_cme_officer", end_of_day(date(2025, 11, 14))),
        ],
    ),
    # Agreed for fair access on Mon 2 Mar 2026: 20 school days across the Easter holiday end on Mon 13 Apr;
    # the senior officer 2 school days later (Wed 15 Apr).
    "fair_access_place_20_days": (
        datetime.combine(date(2026, 3, 2), time(0), tzinfo=LONDON),
        [
            ("caseworker", end_of_day(date(2026, 4, 13))),
            ("senior_cme_officer", end_of_day(date(2026, 4, 15))),
        ],
    ),
    # 20 school days across the Easter holiday; the senior step skips the early May bank holiday (4 May).
    "awaiting_provision_20_days": (
        utc(2026, 3, 16, 9, 0),
        [("caseworker", end_of_day(date(2026, 4, 27))), ("senior_cme_officer", end_of_day(date(2026, 5, 5)))],
    ),
    # Across the May half term and the 1 June INSET day.
    "place_offered_not_started": (
        utc(2026, 5, 18, 9, 0),
        [("caseworker", end_of_day(date(2026, 6, 9))), ("senior_cme_officer", end_of_day(date(2026, 6, 16)))],
    ),
    # Reported in the Easter holiday: the caseworker at the end of the first school day after it.
    "unauthorised_absence_10_days": (
        utc(2026, 4, 2, 13, 0),
        [
            ("caseworker", end_of_day(date(2026, 4, 13))),
            ("senior_cme_officer", end_of_day(date(2026, 4, 20))),
        ],
    ),
    # Reported on the last day of the autumn term: that evening, then 5 school days after the INSET day.
    "continuous_absence_20_days": (
        utc(2025, 12, 19, 15, 0),
        [
            ("caseworker", end_of_day(date(2025, 12, 19))),
            ("senior_cme_officer", end_of_day(date(2026, 1, 12))),
        ],
    ),
    # Left for a named school on Mon 3 Nov 2025: no registration by the 10th school day after (Mon 17 Nov);
    # the senior officer 5 school days on (Mon 24 Nov).
    "transfer_not_registered": (
        utc(2025, 11, 3, 10, 0),
        [
            ("caseworker", end_of_day(date(2025, 11, 17))),
            ("senior_cme_officer", end_of_day(date(2025, 11, 24))),
        ],
    ),
    # Handed over on Wed 10 Dec 2025: 11-19 Dec are days 1-7, 5 Jan is an INSET day, 6-8 Jan are days 8-10.
    "handover_not_confirmed": (
        utc(2025, 12, 10, 9, 0),
        [
            ("caseworker", end_of_day(date(2026, 1, 8))),
            ("senior_cme_officer", end_of_day(date(2026, 1, 15))),
        ],
    ),
    # Moved to an LA outside the deployment on Fri 7 Nov 2025 at 16:00: the task at once; the senior
    # officer 10 school days later (Fri 21 Nov).
    "handover_outside_deployment": (
        utc(2025, 11, 7, 16, 0),
        [
            ("caseworker", utc(2025, 11, 7, 16, 0)),
            ("senior_cme_officer", end_of_day(date(2025, 11, 21))),
        ],
    ),
    # Home education notified on a Friday afternoon for a child on a child protection plan: social care and
    # the caseworker at once; the senior officer at the end of the next school day (Monday).
    "home_education_child_protection": (
        utc(2025, 11, 7, 16, 0),
        [
            ("childrens_social_care", utc(2025, 11, 7, 16, 0)),
            ("caseworker", utc(2025, 11, 7, 16, 0)),
            ("senior_cme_officer", end_of_day(date(2025, 11, 10))),
        ],
    ),
    "not_in_school_notice_child_protection": (
        utc(2025, 11, 7, 16, 0),
        [
            ("childrens_social_care", utc(2025, 11, 7, 16, 0)),
            ("caseworker", utc(2025, 11, 7, 16, 0)),
            ("senior_cme_officer", end_of_day(date(2025, 11, 10))),
        ],
    ),
    "home_education_deletion_child_protection": (
        utc(2025, 11, 7, 16, 0),
        [
            ("childrens_social_care", utc(2025, 11, 7, 16, 0)),
            ("caseworker", utc(2025, 11, 7, 16, 0)),
            ("senior_cme_officer", end_of_day(date(2025, 11, 10))),
        ],
    ),
    # Part-time from Mon 2 Mar 2026: 30 school days across the Easter holiday end on Mon 27 Apr; the senior
    # step skips the early May bank holiday (Tue 5 May).
    "part_time_provision_review": (
        utc(2026, 3, 2, 9, 0),
        [("caseworker", end_of_day(date(2026, 4, 27))), ("senior_cme_officer", end_of_day(date(2026, 5, 5)))],
    ),
    # The LA set Mon 12 Jan 2026 as the review date: the close of that day; the senior officer Mon 19 Jan.
    "review_date_due": (
        datetime.combine(date(2026, 1, 12), time(0), tzinfo=LONDON),
        [
            ("caseworker", end_of_day(date(2026, 1, 12))),
            ("senior_cme_officer", end_of_day(date(2026, 1, 19))),
        ],
    ),
    # Acknowledged on Tue 18 Nov 2025 with no outcome: back to the caseworker 10 school days on (Tue 2 Dec).
    "open_case_review": (
        utc(2025, 11, 18, 11, 0),
        [("caseworker", end_of_day(date(2025, 12, 2)))],
    ),
}


def test_every_default_rule_has_a_scenario(rules: RuleSet) -> None:
    assert {r.id for r in rules.defaults} == set(SCENARIOS)


@pytest.mark.parametrize("rule_id", sorted(SCENARIOS))
def test_default_rule_alerts_on_the_expected_days(rules: RuleSet, cal: SchoolCalendar, rule_id: str) -> None:
    rule = rules.rule(LA, rule_id)
    start, expected = SCENARIOS[rule_id]
    fired_at = rule_due_at(rule, start, cal)
    result = advance(rule, LadderPosition(-1, fired_at), FAR_FUTURE, cal)
    assert [(a.level.value, a.due_at) for a in result.alerts] == expected
    assert [a.step_index for a in result.alerts] == list(range(len(expected)))
    assert result.alerts[0].action == EscalationAction.RAISED
    assert all(a.action == EscalationAction.STEPPED_UP for a in result.alerts[1:])
    assert result.next_due_at is None  # ladder exhausted
    # Just before the rule fires nothing is alerted; at the due moment step 0 (and its zero-delay peers) is.
    early = advance(rule, LadderPosition(-1, fired_at), fired_at - timedelta(seconds=1), cal)
    assert early.alerts == ()
    assert early.next_due_at == expected[0][1]


def test_ladder_steps_one_at_a_time_as_time_passes(rules: RuleSet, cal: SchoolCalendar) -> None:
    rule = rules.rule(LA, "whereabouts_unknown")
    fired = utc(2025, 11, 3, 10, 0)
    first = advance(rule, LadderPosition(-1, fired), utc(2025, 11, 3, 10, 0, 1), cal)
    assert [(a.step_index, a.level.value) for a in first.alerts] == [(0, "caseworker")]
    assert first.next_due_at == end_of_day(date(2025, 11, 10))
    # A week later, one minute before the end of Mon 10 Nov: nothing new.
    quiet = advance(rule, first.position, utc(2025, 11, 10, 23, 58), cal)
    assert quiet.alerts == () and quiet.position == first.position
    second = advance(rule, first.position, utc(2025, 11, 11, 0, 0), cal)
    assert [(a.step_index, a.level.value, a.action) for a in second.alerts] == [
        (1, "senior_cme_officer", EscalationAction.STEPPED_UP)
    ]
    assert second.next_due_at == end_of_day(date(2025, 11, 17))


def test_a_worker_that_was_down_catches_up_with_the_same_times(rules: RuleSet, cal: SchoolCalendar) -> None:
    rule = rules.rule(LA, "whereabouts_unknown")
    fired = utc(2025, 11, 3, 10, 0)
    step_by_step = advance(rule, LadderPosition(-1, fired), fired, cal)
    step_by_step = advance(rule, step_by_step.position, utc(2025, 11, 11, 8, 0), cal)
    late_all_at_once = advance(rule, LadderPosition(-1, fired), utc(2025, 12, 1, 8, 0), cal)
    assert late_all_at_once.alerts[1] == step_by_step.alerts[0]
    assert len(late_all_at_once.alerts) == 3


def test_stopped_ladder_never_moves(rules: RuleSet, cal: SchoolCalendar) -> None:
    rule = rules.rule(LA, "whereabouts_unknown")
    stopped = LadderPosition(0, utc(2025, 11, 3, 10, 0), stopped=True)
    result = advance(rule, stopped, FAR_FUTURE, cal)
    assert result.alerts == () and result.next_due_at is None


def test_acknowledgement_rules() -> None:
    at_step_2 = LadderPosition(2, utc(2025, 11, 3, 10, 0))
    assert acknowledgement_stops(at_step_2, 2)  # the current step
    assert acknowledgement_stops(at_step_2, 0)  # an earlier step alerted together with it counts too
    assert not acknowledgement_stops(at_step_2, 3)  # not alerted yet: cannot be genuine
    assert not acknowledgement_stops(LadderPosition(-1, utc(2025, 11, 3)), 0)
    assert not acknowledgement_stops(LadderPosition(1, utc(2025, 11, 3), stopped=True), 1)
