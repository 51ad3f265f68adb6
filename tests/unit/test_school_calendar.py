"""School-day calendar: bank holidays, terms, half terms, INSET, fallback, deadlines, per-LA overrides."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from shared.school_calendar import (
    DEFAULT_CALENDAR_PATH,
    CalendarConfigError,
    CalendarRegistry,
    SchoolCalendar,
    TermCalendar,
    england_bank_holidays,
)


@pytest.fixture(scope="module")
def registry() -> CalendarRegistry:
    return CalendarRegistry()


@pytest.fixture(scope="module")
def cal(registry: CalendarRegistry) -> SchoolCalendar:
    return registry.default


def d(s: str) -> date:
    return date.fromisoformat(s)


# -- an independent oracle: day-by-day from the raw YAML, sharing no code with the module -------------------


def _oracle(path: Path = DEFAULT_CALENDAR_PATH):  # type: ignore[no-untyped-def]
    raw = yaml.safe_load(path.read_text())
    terms = [
        (t["start"], t["end"], [(b["start"], b["end"]) for b in t.get("breaks", [])]) for t in raw["terms"]
    ]
    inset = set(raw["inset_days"])
    configured_years = {t[0].year if t[0].month >= 8 else t[0].year - 1 for t in terms}

    def covered(day: date) -> bool:
        year = day.year if day.month >= 9 else day.year - 1
        return year in configured_years

    def is_school_day(day: date) -> bool:
        if day.weekday() >= 5 or day in england_bank_holidays(day.year):
            return False
        if not covered(day):
            return True
        for start, end, breaks in terms:
            if start <= day <= end:
                return day not in inset and not any(bs <= day <= be for bs, be in breaks)
        return False

    return is_school_day


# -- bank holidays, weekends, half terms, INSET, holidays ---------------------------------------------------


@pytest.mark.parametrize(
    "day",
    [
        "2025-05-05",  # early May bank holiday, inside the summer term
        "2025-12-25",
        "2025-12-26",
        "2026-01-01",
        "2026-04-03",  # Good Friday
        "2026-04-06",  # Easter Monday
        "2025-05-26",  # spring bank holiday (in half term anyway)
    ],
)
def test_bank_holidays_are_not_school_days(cal: SchoolCalendar, day: str) -> None:
    assert cal.is_bank_holiday(d(day))
    assert not cal.is_school_day(d(day))


def test_day_after_a_term_time_bank_holiday_is_a_school_day(cal: SchoolCalendar) -> None:
    assert cal.is_school_day(d("2025-05-06"))
    assert not cal.is_bank_holiday(d("2025-05-06"))
    assert cal.next_school_day(d("2025-05-02")) == d("2025-05-06")  # Fri -> (weekend, bank holiday) -> Tue


@pytest.mark.parametrize("day", ["2025-09-06", "2025-09-07", "2025-11-08", "2026-03-01"])
def test_weekends_are_not_school_days(cal: SchoolCalendar, day: str) -> None:
    assert not cal.is_school_day(d(day))


def test_autumn_half_term_2025(cal: SchoolCalendar) -> None:
    assert cal.is_school_day(d("2025-10-24"))  # Friday before
    for offset in range(5):
        assert not cal.is_school_day(d("2025-10-27") + timedelta(days=offset))
    assert cal.is_school_day(d("2025-11-03"))  # Monday after
    assert cal.next_school_day(d("2025-10-24")) == d("2025-11-03")


@pytest.mark.parametrize("day", ["2026-02-16", "2026-02-20", "2026-05-27", "2025-02-19"])
def test_other_half_terms(cal: SchoolCalendar, day: str) -> None:
    assert not cal.is_school_day(d(day))


def test_inset_days(cal: SchoolCalendar) -> None:
    # Autumn 2025 term starts Mon 1 Sep with two INSET days; pupils start Wed 3 Sep.
    assert not cal.is_school_day(d("2025-09-01"))
    assert not cal.is_school_day(d("2025-09-02"))
    assert cal.is_school_day(d("2025-09-03"))
    assert not cal.is_school_day(d("2026-01-05"))  # spring term INSET
    assert cal.is_school_day(d("2026-01-06"))


@pytest.mark.parametrize("day", ["2025-12-22", "2025-12-31", "2026-04-08", "2026-08-12", "2025-08-15"])
def test_school_holidays_in_configured_years(cal: SchoolCalendar, day: str) -> None:
    assert cal.is_configured(d(day))
    assert not cal.is_school_day(d(day))


@pytest.mark.parametrize("year", [2024, 2025, 2026])
def test_each_default_year_has_190_pupil_days(cal: SchoolCalendar, year: int) -> None:
    assert cal.school_days_between(date(year, 8, 31), date(year + 1, 8, 31)) == 190


# -- arithmetic ---------------------------------------------------------------------------------------------


def test_ten_school_days_across_christmas(cal: SchoolCalendar) -> None:
    # After Mon 15 Dec 2025: Tue 16 (1), Wed 17 (2), Thu 18 (3), Fri 19 (4); holiday to Sun 4 Jan;
    # Mon 5 Jan is INSET; Tue 6 (5), Wed 7 (6), Thu 8 (7), Fri 9 (8), Mon 12 (9), Tue 13 (10).
    assert cal.add_school_days(d("2025-12-15"), 10) == d("2026-01-13")
    assert cal.school_days_between(d("2025-12-15"), d("2026-01-13")) == 10
    assert cal.school_days_between(d("2025-12-15"), d("2026-01-12")) == 9


def test_add_zero_days_convention(cal: SchoolCalendar) -> None:
    assert cal.add_school_days(d("2025-12-15"), 0) == d("2025-12-15")  # a school day is its own day 0
    assert cal.add_school_days(d("2025-12-20"), 0) == d("2026-01-06")  # Saturday -> next school day
    assert cal.add_school_days(d("2025-12-20"), 1) == d("2026-01-06")  # from a holiday, day 1 is the same


def test_add_rejects_negative(cal: SchoolCalendar) -> None:
    with pytest.raises(ValueError):
        cal.add_school_days(d("2025-12-15"), -1)


def test_counting_between(cal: SchoolCalendar) -> None:
    assert cal.school_days_between(d("2025-09-01"), d("2025-09-05")) == 3  # 2 Sep INSET; 3, 4, 5 count
    assert cal.school_days_between(d("2025-10-20"), d("2025-11-07")) == 9  # 21-24 Oct, half term, 3-7 Nov
    assert cal.school_days_between(d("2025-11-03"), d("2025-11-03")) == 0
    assert cal.school_days_between(d("2026-01-13"), d("2025-12-15")) == -10


def test_school_days_in_is_inclusive(cal: SchoolCalendar) -> None:
    days = list(cal.school_days_in(d("2025-12-17"), d("2026-01-07")))
    assert days == [d("2025-12-17"), d("2025-12-18"), d("2025-12-19"), d("2026-01-06"), d("2026-01-07")]
    assert list(cal.school_days_in(d("2026-01-07"), d("2025-12-17"))) == []


def test_year_boundary_into_unconfigured_year(cal: SchoolCalendar) -> None:
    # Summer 2027 ends with an INSET day on 21 Jul; August is still the configured summer holiday;
    # 2027/28 has no term dates, so weekdays from 1 Sep 2027 count (the clock never stops).
    assert not cal.is_school_day(d("2027-08-10"))
    assert cal.add_school_days(d("2027-07-20"), 3) == d("2027-09-03")
    assert not cal.is_configured(d("2027-09-06"))


def test_fallback_outside_configured_years(cal: SchoolCalendar) -> None:
    assert cal.is_school_day(d("2028-03-01"))  # an ordinary Wednesday
    assert not cal.is_school_day(d("2028-04-14"))  # Good Friday 2028
    assert not cal.is_school_day(d("2028-04-15"))  # Saturday
    assert cal.is_school_day(d("2024-08-20"))  # before the first configured year: weekday fallback
    assert not cal.is_school_day(d("2024-08-26"))  # late summer bank holiday
    assert cal.add_school_days(d("2028-04-13"), 1) == d(
        "2028-04-18"
    )  # skips Good Friday, weekend, Easter Monday


def test_without_terms_every_non_holiday_weekday_counts() -> None:
    cal = SchoolCalendar(None)
    assert cal.is_school_day(d("2025-12-22"))
    assert not cal.is_school_day(d("2025-12-25"))
    assert cal.add_school_days(d("2025-12-24"), 1) == d("2025-12-29")


def test_injected_bank_holidays_are_honoured() -> None:
    extra = d("2026-03-10")  # pretend a one-off bank holiday in term time

    def bank(year: int) -> frozenset[date]:
        return england_bank_holidays(year) | ({extra} if year == extra.year else frozenset())

    cal = CalendarRegistry(bank_holidays=bank).default
    assert not cal.is_school_day(extra)
    assert cal.next_school_day(d("2026-03-09")) == d("2026-03-11")


def test_matches_independent_oracle_day_by_day(cal: SchoolCalendar) -> None:
    oracle = _oracle()
    day = d("2024-06-01")
    while day <= d("2028-09-30"):
        assert cal.is_school_day(day) == oracle(day), day
        day += timedelta(days=1)


def test_add_and_between_agree_with_oracle_on_random_dates(cal: SchoolCalendar) -> None:
    oracle = _oracle()
    rng = random.Random(20251215)
    base = d("2024-06-01").toordinal()
    for _ in range(300):
        start = date.fromordinal(base + rng.randrange(0, 1200))
        n = rng.randrange(0, 120)
        # Oracle add: walk forward day by day.
        if n == 0:
            expected = start
            while not oracle(expected):
                expected += timedelta(days=1)
        else:
            expected, left = start, n
            while left:
                expected += timedelta(days=1)
                left -= oracle(expected)
        assert cal.add_school_days(start, n) == expected, (start, n)
        end = date.fromordinal(start.toordinal() + rng.randrange(-400, 400))
        lo, hi = min(start, end), max(start, end)
        count = sum(oracle(lo + timedelta(days=i)) for i in range(1, (hi - lo).days + 1))
        assert cal.school_days_between(start, end) == (count if end >= start else -count)
        inclusive = list(cal.school_days_in(lo, hi))
        assert len(inclusive) == count + oracle(lo)


# -- deadlines ----------------------------------------------------------------------------------------------


def test_deadline_across_christmas_in_gmt(cal: SchoolCalendar) -> None:
    due = cal.deadline_for(datetime(2025, 12, 15, 9, 30, tzinfo=UTC), 10)
    assert due == datetime(2026, 1, 13, 23, 59, 59, tzinfo=UTC)
    assert due.utcoffset() == timedelta(0)


def test_deadline_in_british_summer_time(cal: SchoolCalendar) -> None:
    bst = timezone(timedelta(hours=1))
    due = cal.deadline_for(datetime(2025, 6, 10, 10, 0, tzinfo=bst), 1)
    assert due == datetime(2025, 6, 11, 22, 59, 59, tzinfo=UTC)  # 23:59:59 BST


def test_deadline_uses_the_london_date(cal: SchoolCalendar) -> None:
    # 23:30 UTC on Tue 10 Jun 2025 is already Wed 11 Jun in London.
    due = cal.deadline_for(datetime(2025, 6, 10, 23, 30, tzinfo=UTC), 0)
    assert due == datetime(2025, 6, 11, 22, 59, 59, tzinfo=UTC)


def test_deadline_requires_aware_datetime(cal: SchoolCalendar) -> None:
    with pytest.raises(ValueError):
        cal.deadline_for(datetime(2025, 6, 10, 10, 0), 1)


# -- registry and validation --------------------------------------------------------------------------------


def _write(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _one_year(half_term_start: str, half_term_end: str) -> dict[str, object]:
    """A complete 2025/26 for a test LA; only the autumn half term differs between calls."""
    return {
        "name": "test LA",
        "terms": [
            {
                "name": "autumn 2025",
                "start": d("2025-09-03"),
                "end": d("2025-12-19"),
                "breaks": [{"start": d(half_term_start), "end": d(half_term_end)}],
            },
            {"name": "spring 2026", "start": d("2026-01-05"), "end": d("2026-03-27")},
            {"name": "summer 2026", "start": d("2026-04-13"), "end": d("2026-07-22")},
        ],
        "inset_days": [d("2025-09-03")],
    }


def test_per_la_override(tmp_path: Path, registry: CalendarRegistry) -> None:
    _write(tmp_path / "202.yaml", _one_year("2025-10-20", "2025-10-24"))
    (tmp_path / "README.txt").write_text("ignored")
    reg = CalendarRegistry(override_dir=tmp_path)
    la = reg.calendar_for("202")
    assert reg.overridden() == {"202"}
    assert not la.is_school_day(d("2025-10-22"))  # this LA's half term
    assert la.is_school_day(d("2025-10-28"))  # the default half term is term time here
    assert not la.is_school_day(d("2025-09-03"))  # its INSET day
    assert not la.is_school_day(d("2025-09-02"))  # configured year, before its first term: holiday
    assert la.is_school_day(d("2025-09-04"))
    assert la.is_school_day(d("2026-07-22"))  # this LA's summer term runs a day longer
    assert la.is_school_day(d("2026-02-18"))  # and has no spring half term
    assert registry.default.is_school_day(d("2025-10-22"))  # the default is untouched


def test_default_for_unknown_la_and_bad_codes(tmp_path: Path) -> None:
    _write(tmp_path / "202.yaml", _one_year("2025-10-20", "2025-10-24"))
    reg = CalendarRegistry(override_dir=tmp_path)
    assert reg.calendar_for("999") is reg.default
    with pytest.raises(ValueError):
        reg.calendar_for("20")


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda c: c["terms"][0].update(end=d("2025-08-01")), "terms[0]"),
        (lambda c: c["terms"][0].update(start="not a date"), "terms[0].start"),
        (lambda c: c["terms"][0]["breaks"][0].update(end=d("2026-01-10")), "not inside term"),
        (lambda c: c.update(inset_days=[d("2025-09-06")]), "weekend"),
        (lambda c: c.update(inset_days=[d("2025-10-21")]), "not a term day"),
        (lambda c: c.update(colour="blue"), "field colour"),
        (lambda c: c.update(terms=[]), "field terms"),
        (lambda c: c["terms"].pop(), "incomplete"),  # a year without its summer term
    ],
)
def test_invalid_override_names_la_file_and_field(tmp_path: Path, mutate, fragment: str) -> None:  # type: ignore[no-untyped-def]
    config = _one_year("2025-10-20", "2025-10-24")
    mutate(config)
    _write(tmp_path / "203.yaml", config)
    with pytest.raises(CalendarConfigError) as info:
        CalendarRegistry(override_dir=tmp_path)
    message = str(info.value)
    assert "LA 203" in message
    assert "203.yaml" in message
    assert fragment in message


def test_overlapping_terms_rejected() -> None:
    term = {"start": d("2025-09-01"), "end": d("2025-12-19")}
    with pytest.raises(ValueError, match="overlap"):
        TermCalendar.model_validate({"terms": [term, {"start": d("2025-12-01"), "end": d("2026-03-27")}]})


def test_override_file_name_must_be_la_code(tmp_path: Path) -> None:
    _write(tmp_path / "camden.yaml", _one_year("2025-10-20", "2025-10-24"))
    with pytest.raises(CalendarConfigError, match=r"camden\.yaml"):
        CalendarRegistry(override_dir=tmp_path)


def test_missing_override_dir(tmp_path: Path) -> None:
    with pytest.raises(CalendarConfigError):
        CalendarRegistry(override_dir=tmp_path / "nope")


def test_term_starting_in_august_belongs_to_the_new_year() -> None:
    terms = [
        {"start": d("2025-09-01"), "end": d("2025-12-19")},
        {"start": d("2026-01-05"), "end": d("2026-03-27")},
        {"start": d("2026-04-13"), "end": d("2026-07-17")},
        {"start": d("2026-08-27"), "end": d("2026-12-18")},  # an early-starting LA
        {"start": d("2027-01-04"), "end": d("2027-03-25")},
        {"start": d("2027-04-12"), "end": d("2027-07-21")},
    ]
    tc = TermCalendar.model_validate({"terms": terms})
    assert tc.academic_years() == [2025, 2026]
    cal = SchoolCalendar(tc)
    assert not cal.is_school_day(d("2026-08-26"))  # still the summer holiday
    assert cal.is_school_day(d("2026-08-27"))
    assert not cal.is_school_day(d("2026-08-31"))  # late summer bank holiday
    assert cal.school_days_between(d("2026-08-26"), d("2026-09-01")) == 3  # 27, 28 Aug and 1 Sep
