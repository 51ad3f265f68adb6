"""School-day calendar for England: term dates per LA plus England and Wales bank holidays.

Statutory clocks in CME work are counted in school days (School Attendance (Pupil Registration) (England)
Regulations 2024; exclusion and admissions guidance), so every deadline in the tracker goes through here.

A date is a school day when:

* it falls inside an academic year that the LA's calendar configures, and it is a weekday inside a term, not
  in a half-term break, not an INSET day and not a bank holiday; or
* it falls outside every configured academic year and it is a weekday that is not a bank holiday. This
  fallback is deliberate: a missing calendar must make clocks run (escalations fire early), never stop
  silently.

A configured academic year runs, like the statutory "school year", from the first day of its autumn term (or
1 September, whichever is earlier) up to the day before the next configured year begins (or 31 August when the
next year is not configured), so the summer holiday after the last configured year is still a holiday.

Speed: each academic year (1 Sep to 31 Aug buckets) is turned once into a sorted list of school-day ordinals
(``date.toordinal()``); every query is then a ``bisect`` on that list, O(log n).
"""

from __future__ import annotations

import functools
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import holidays
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

__all__ = [
    "DEFAULT_CALENDAR_PATH",
    "LONDON",
    "CalendarConfigError",
    "CalendarRegistry",
    "HalfTermBreak",
    "SchoolCalendar",
    "Term",
    "TermCalendar",
    "england_bank_holidays",
    "format_validation_error",
    "load_term_calendar",
]

LONDON = ZoneInfo("Europe/London")
DEFAULT_CALENDAR_PATH = Path(__file__).resolve().parent / "calendars" / "default.yaml"
LA_CODE_RE = re.compile(r"^[0-9]{3}$")
# End of a school day for deadlines: the whole day counts, whatever time the clock started.
END_OF_SCHOOL_DAY = time(23, 59, 59)


class CalendarConfigError(ValueError):
    """A term calendar file is missing, unreadable or invalid; the message names the file/LA and field."""


@functools.lru_cache(maxsize=256)
def england_bank_holidays(year: int) -> frozenset[date]:
    """England and Wales bank holidays for one calendar year (substitute days included), cached per year."""
    return frozenset(holidays.country_holidays("GB", subdiv="ENG", years=year).keys())


# ----------------------------------------------------------------------------------------------------
# Configuration models
# ----------------------------------------------------------------------------------------------------


class HalfTermBreak(BaseModel):
    """A break inside a term (half term), both ends inclusive."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: date
    end: date

    @model_validator(mode="after")
    def _ordered(self) -> HalfTermBreak:
        if self.end < self.start:
            raise ValueError(f"break end {self.end} is before its start {self.start}")
        return self


class Term(BaseModel):
    """One term, both ends inclusive, with its half-term breaks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = ""
    start: date
    end: date
    breaks: tuple[HalfTermBreak, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> Term:
        if self.end < self.start:
            raise ValueError(f"term end {self.end} is before its start {self.start}")
        previous: HalfTermBreak | None = None
        for brk in sorted(self.breaks, key=lambda b: b.start):
            if brk.start < self.start or brk.end > self.end:
                raise ValueError(f"break {brk.start}..{brk.end} is not inside term {self.start}..{self.end}")
            if previous is not None and brk.start <= previous.end:
                raise ValueError(
                    f"breaks {previous.start}..{previous.end} and {brk.start}..{brk.end} overlap"
                )
            previous = brk
        return self

    @property
    def academic_year(self) -> int:
        """The year its academic year starts in (2025 for 2025/26); an August start opens the new year."""
        return self.start.year if self.start.month >= 8 else self.start.year - 1

    def contains(self, d: date) -> bool:
        return self.start <= d <= self.end and not any(b.start <= d <= b.end for b in self.breaks)


class TermCalendar(BaseModel):
    """Term dates, half terms and INSET days for one LA (or the shipped default)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = ""
    terms: tuple[Term, ...] = Field(min_length=1)
    inset_days: tuple[date, ...] = ()

    @field_validator("terms")
    @classmethod
    def _terms_consistent(cls, terms: tuple[Term, ...]) -> tuple[Term, ...]:
        ordered = sorted(terms, key=lambda t: t.start)
        for earlier, later in pairwise(ordered):
            if later.start <= earlier.end:
                raise ValueError(
                    f"terms {earlier.start}..{earlier.end} and {later.start}..{later.end} overlap"
                )
        by_year: dict[int, list[Term]] = {}
        for term in ordered:
            by_year.setdefault(term.academic_year, []).append(term)
        for year, year_terms in by_year.items():
            # A year with terms missing would read as a months-long holiday and stop every clock: refuse it.
            if year_terms[0].start.month not in (8, 9) or year_terms[-1].end.month not in (7, 8):
                raise ValueError(
                    f"academic year {year}/{(year + 1) % 100:02d} is incomplete: its terms must run from "
                    f"August/September to July/August"
                )
        return tuple(ordered)

    @field_validator("inset_days")
    @classmethod
    def _inset_in_term(cls, inset_days: tuple[date, ...], info: ValidationInfo) -> tuple[date, ...]:
        terms: tuple[Term, ...] = info.data.get("terms", ())
        for inset in inset_days:
            # An INSET day outside term time or at a weekend is a typo, not a closure: reject it loudly.
            if inset.weekday() >= 5:
                raise ValueError(f"INSET day {inset} is a weekend")
            if terms and not any(t.contains(inset) for t in terms):
                raise ValueError(f"INSET day {inset} is not a term day (outside terms or in a break)")
        if len(set(inset_days)) != len(inset_days):
            raise ValueError("INSET days contain duplicates")
        return inset_days

    def academic_years(self) -> list[int]:
        return sorted({t.academic_year for t in self.terms})


def format_validation_error(exc: ValidationError) -> str:
    """One line per error: ``field terms[0].end: message`` (pydantic's own wording for the message)."""
    parts: list[str] = []
    for err in exc.errors():
        loc = ""
        for item in err["loc"]:
            loc += f"[{item}]" if isinstance(item, int) else (f".{item}" if loc else str(item))
        parts.append(f"field {loc or '<root>'}: {str(err['msg']).removeprefix('Value error, ')}")
    return "; ".join(parts)


def load_term_calendar(path: Path, label: str) -> TermCalendar:
    """Load and validate one calendar YAML file; errors name ``label`` (e.g. "LA 202"), the file and field."""
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CalendarConfigError(f"calendar for {label} ({path}): cannot read: {exc}") from exc
    if not isinstance(raw, dict):
        raise CalendarConfigError(f"calendar for {label} ({path}): expected a mapping at the top level")
    try:
        return TermCalendar.model_validate(raw)
    except ValidationError as exc:
        raise CalendarConfigError(f"calendar for {label} ({path}): {format_validation_error(exc)}") from exc


# ----------------------------------------------------------------------------------------------------
# The calendar
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _YearIndex:
    """School days of one 1 Sep..31 Aug bucket as sorted ordinals (and a set for O(1) membership)."""

    days: list[int]
    members: frozenset[int]


def _bucket_of(d: date) -> int:
    return d.year if d.month >= 9 else d.year - 1


class SchoolCalendar:
    """Pure school-day arithmetic over one LA's :class:`TermCalendar` plus England bank holidays.

    Outside the configured academic years every weekday that is not a bank holiday counts as a school day (see
    the module docstring). With ``terms=None`` the whole timeline is that fallback.
    """

    def __init__(
        self,
        terms: TermCalendar | None,
        bank_holidays: Callable[[int], frozenset[date]] = england_bank_holidays,
    ) -> None:
        self.terms = terms
        self._bank_holidays = bank_holidays
        self._years: dict[int, _YearIndex] = {}
        self._inset = frozenset(d.toordinal() for d in terms.inset_days) if terms else frozenset()
        self._term_spans: list[tuple[int, int, Term]] = sorted(
            ((t.start.toordinal(), t.end.toordinal(), t) for t in terms.terms) if terms else (),
            key=lambda s: s[0],
        )
        self._term_starts = [s[0] for s in self._term_spans]
        self._covered = self._configured_spans(terms)
        self._covered_starts = [s[0] for s in self._covered]

    @staticmethod
    def _configured_spans(terms: TermCalendar | None) -> list[tuple[int, int]]:
        """Ordinal spans (inclusive) of the configured academic years, per the statutory school-year idea."""
        if terms is None:
            return []
        first_start: dict[int, date] = {}
        for t in terms.terms:
            y = t.academic_year
            first_start[y] = min(first_start.get(y, t.start), t.start)
        spans: list[tuple[int, int]] = []
        for y in sorted(first_start):
            start = min(date(y, 9, 1), first_start[y])
            end = date(y + 1, 8, 31)
            if y + 1 in first_start:
                end = min(end, first_start[y + 1] - timedelta(days=1))
            spans.append((start.toordinal(), end.toordinal()))
        return spans

    # -- classification (only used while building a year's index) ----------------------------------------

    def _is_covered(self, ordinal: int) -> bool:
        i = bisect_right(self._covered_starts, ordinal) - 1
        return i >= 0 and ordinal <= self._covered[i][1]

    def _in_term(self, ordinal: int) -> bool:
        i = bisect_right(self._term_starts, ordinal) - 1
        if i < 0:
            return False
        _, end, term = self._term_spans[i]
        return ordinal <= end and term.contains(date.fromordinal(ordinal))

    def _classify(self, d: date, bank: frozenset[date]) -> bool:
        if d.weekday() >= 5 or d in bank:
            return False
        o = d.toordinal()
        if not self._is_covered(o):
            return True
        return self._in_term(o) and o not in self._inset

    def _year(self, bucket: int) -> _YearIndex:
        idx = self._years.get(bucket)
        if idx is None:
            first = date(bucket, 9, 1)
            last = date(bucket + 1, 8, 31)
            bank = self._bank_holidays(bucket) | self._bank_holidays(bucket + 1)
            days = [
                o
                for o in range(first.toordinal(), last.toordinal() + 1)
                if self._classify(date.fromordinal(o), bank)
            ]
            idx = _YearIndex(days, frozenset(days))
            # Racing builders produce identical lists, so an unlocked dict write is safe.
            self._years[bucket] = idx
        return idx

    # -- public API ---------------------------------------------------------------------------------------

    def is_bank_holiday(self, d: date) -> bool:
        return d in self._bank_holidays(d.year)

    def is_configured(self, d: date) -> bool:
        """True when ``d`` lies in an academic year this calendar configures (False: the weekday fallback)."""
        return self._is_covered(d.toordinal())

    def is_school_day(self, d: date) -> bool:
        return d.toordinal() in self._year(_bucket_of(d)).members

    def next_school_day(self, d: date) -> date:
        """The first school day strictly after ``d``."""
        return self.add_school_days(d, 1)

    def add_school_days(self, start: date, n: int) -> date:
        """The ``n``-th school day after ``start``, not counting ``start`` itself.

        ``n == 0`` returns ``start`` when it is a school day, otherwise the next school day. So a clock of n
        school days started on a Monday in term ends on the n-th following school day (n=1: Tuesday), and one
        started at a weekend or in a holiday behaves as if started just before the next school day (n=1: that
        next school day; n=0 gives the same day). ``n`` must be >= 0.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        bucket = _bucket_of(start)
        idx = self._year(bucket)
        o = start.toordinal()
        if n == 0:
            pos = bisect_left(idx.days, o)  # first school day >= start
            remaining = 1
        else:
            pos = bisect_right(idx.days, o)  # first school day > start
            remaining = n
        # remaining counts school days still to step over, starting with the one at ``pos``.
        while pos + remaining > len(idx.days):
            remaining -= len(idx.days) - pos
            bucket += 1
            idx = self._year(bucket)
            pos = 0
        return date.fromordinal(idx.days[pos + remaining - 1])

    def school_days_between(self, start: date, end: date) -> int:
        """School days in the half-open range (start, end]: after ``start``, up to and including ``end``.

        Additive: ``between(a, b) + between(b, c) == between(a, c)``, so ``end < start`` gives a negative
        count.
        """
        if end < start:
            return -self.school_days_between(end, start)
        b_start, b_end = _bucket_of(start), _bucket_of(end)
        s, e = start.toordinal(), end.toordinal()
        if b_start == b_end:
            days = self._year(b_start).days
            return bisect_right(days, e) - bisect_right(days, s)
        first = self._year(b_start).days
        total = len(first) - bisect_right(first, s)
        for bucket in range(b_start + 1, b_end):
            total += len(self._year(bucket).days)
        total += bisect_right(self._year(b_end).days, e)
        return total

    def school_days_in(self, start: date, end: date) -> Iterator[date]:
        """Every school day in the closed range [start, end], in order (empty when ``end < start``).

        Note the closed range, unlike :meth:`school_days_between`.
        """
        if end < start:
            return
        s, e = start.toordinal(), end.toordinal()
        for bucket in range(_bucket_of(start), _bucket_of(end) + 1):
            days = self._year(bucket).days
            for o in days[bisect_left(days, s) : bisect_right(days, e)]:
                yield date.fromordinal(o)

    def deadline_for(self, start: datetime, school_days: int) -> datetime:
        """End (23:59:59 Europe/London) of school day ``add_school_days(start's London date, school_days)``.

        ``start`` must be timezone-aware; the result is timezone-aware UTC. With ``school_days=0`` the
        deadline is the end of the start day if it is a school day, else the end of the next school day.
        """
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError("deadline_for needs a timezone-aware datetime")
        local_day = start.astimezone(LONDON).date()
        due = self.add_school_days(local_day, school_days)
        return datetime.combine(due, END_OF_SCHOOL_DAY, tzinfo=LONDON).astimezone(UTC)


# ----------------------------------------------------------------------------------------------------
# Per-LA registry
# ----------------------------------------------------------------------------------------------------


class CalendarRegistry:
    """Calendars by LA code: ``<override_dir>/<la_code>.yaml`` when present, otherwise the default calendar.

    An override file is a complete :class:`TermCalendar` for that LA: it replaces the default, not merged
    with it. Every file is loaded and validated at construction, so a bad file fails at start-up, naming the
    LA and field.
    """

    def __init__(
        self,
        override_dir: Path | None = None,
        default_path: Path = DEFAULT_CALENDAR_PATH,
        bank_holidays: Callable[[int], frozenset[date]] = england_bank_holidays,
    ) -> None:
        self._default = SchoolCalendar(load_term_calendar(default_path, "default"), bank_holidays)
        self._by_la: dict[str, SchoolCalendar] = {}
        if override_dir is not None:
            if not override_dir.is_dir():
                raise CalendarConfigError(f"calendar override directory {override_dir} does not exist")
            for path in sorted(override_dir.iterdir()):
                if path.suffix not in (".yaml", ".yml"):
                    continue
                if not LA_CODE_RE.match(path.stem):
                    raise CalendarConfigError(
                        f"calendar override {path}: file name must be <la_code>.yaml with a 3-digit LA code"
                    )
                if path.stem in self._by_la:
                    raise CalendarConfigError(f"calendar override {path}: LA {path.stem} is defined twice")
                self._by_la[path.stem] = SchoolCalendar(
                    load_term_calendar(path, f"LA {path.stem}"), bank_holidays
                )

    @property
    def default(self) -> SchoolCalendar:
        return self._default

    def overridden(self) -> frozenset[str]:
        return frozenset(self._by_la)

    def calendar_for(self, la_code: str) -> SchoolCalendar:
        if not LA_CODE_RE.match(la_code):
            raise ValueError(f"LA code must be 3 digits, got {la_code!r}")
        return self._by_la.get(la_code, self._default)


# The month-end days of a report's trend: tracking counts them in SQL, the web's reference replays them.
def month_ends(on: date, months: int) -> list[date]:
    """``on`` and the last day of each of the ``months - 1`` months before it, oldest first."""
    out = [on]
    first = on.replace(day=1)
    for _ in range(months - 1):
        last_of_previous = first - timedelta(days=1)
        out.append(last_of_previous)
        first = last_of_previous.replace(day=1)
    return list(reversed(out))
