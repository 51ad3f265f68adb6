"""Per-pupil attendance state and the rules over it: pure Python, no Kafka (the faust agent drives it).

State per pupil (UPN): for each (school URN, school year 1 Aug - 31 Jul) one :class:`SchoolYear`:

- ``am`` / ``pm``: a ``bytearray`` with one byte per weekday of the year (index 0 = first weekday on or after
  1 August), holding the session's code (``codes.CODE_BYTE``; 0 = no mark yet). Weekdays, not school days,
  so the stored index never depends on the LA's term dates: a holiday or INSET day is a slot without a mark.
- ``am_keys`` / ``pm_keys``: an ``array('I')`` with each session's ordering key (seconds from 1 August of the
  year to the mark's ``occurred_at``, shifted left 6 bits, plus ``version`` capped at 63): a mark replaces the
  stored one only when its key is larger, so the latest recorded version wins whatever the arrival order.
- ``crossings``: the crossings emitted so far, by (rule index, first absent weekday index) -> generation * 2 +
  active. A retracted crossing that later holds again is emitted with the next generation, so its event_id is
  new (downstream dedups on event_id and would otherwise drop it).

Marks on a date the LA calendar says is not a school day (weekends, bank holidays, holidays, INSET days) are
ignored, so such days never break or extend a run. Rules are evaluated with ``bytes.translate``, big-int OR
and ``re`` over the year's bytes (C speed), so a mark costs microseconds whatever the pupil's history.
"""

from __future__ import annotations

import re
import struct
import sys
import uuid
from array import array
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple

from services.attendance.codes import ABSENT, ATTENDED, CATEGORY, CODE_BYTE, translation
from services.attendance.rules import AttendanceRules, CompiledRule
from shared.events.attendance import AttendanceMark
from shared.events.envelope import Envelope, Source
from shared.events.inbound import (
    AbsenceThresholdCrossed,
    AbsenceThresholdCrossedPayload,
    AbsenceThresholdRetracted,
    AbsenceThresholdRetractedPayload,
    ChildIdentity,
)
from shared.school_calendar import CalendarRegistry, SchoolCalendar

SOURCE_SYSTEM = "cme-attendance"
# Namespace of the deterministic ids of emitted crossings and retractions (a replay re-emits the same ids).
EVENT_NAMESPACE = uuid.UUID("6f1c7a52-3d0e-4c55-9b7e-0a7e2d1c4b10")
_KEY_SECONDS_MAX = (1 << 26) - 1  # about 2.1 years after 1 August: later corrections all sort as "latest"
_STATE_FORMAT = 1

# Day classes for run rules: per session 1 = counts, 2 = breaks; OR of both sessions; then to letters.
_DAY_LETTERS = bytes([ord("."), ord("c"), ord("x"), ord("x")] + [ord("x")] * 252)
_SEGMENT = re.compile(rb"[c.]+")
# Percentage rules: absent sessions -> "a", attended -> "p", the rest (D, Y, Q, X, Z, #, unmarked) -> ".".
_PCT_TABLE = translation(
    {c: ord("a") for c, cat in CATEGORY.items() if cat in ABSENT}
    | {c: ord("p") for c, cat in CATEGORY.items() if cat in ATTENDED},
    default=ord("."),
    unmarked=ord("."),
)


# ------------------------------------------------------------------------------------------------------
# Dates <-> weekday index within a school year
# ------------------------------------------------------------------------------------------------------


def school_year_of(d: date) -> int:
    """The school year (1 Aug - 31 Jul, s.579 Education Act 1996) a date falls in, by its starting year."""
    return d.year if d.month >= 8 else d.year - 1


@dataclass(frozen=True, slots=True)
class _YearGrid:
    monday_base: int  # ordinal of the Monday on or before 1 August
    first: int  # weekday number (weeks * 5 + day) of index 0


_GRIDS: dict[int, _YearGrid] = {}


def _grid(year: int) -> _YearGrid:
    grid = _GRIDS.get(year)
    if grid is None:
        aug1 = date(year, 8, 1)
        w0 = aug1.weekday()
        grid = _GRIDS[year] = _YearGrid(aug1.toordinal() - w0, min(w0, 5))
    return grid


def weekday_index(d: date, year: int) -> int:
    """Index of a weekday ``d`` in school year ``year`` (weekends have no index)."""
    grid = _grid(year)
    w = d.toordinal() - grid.monday_base
    return (w // 7) * 5 + (w % 7) - grid.first


def index_date(index: int, year: int) -> date:
    grid = _grid(year)
    g = index + grid.first
    return date.fromordinal(grid.monday_base + (g // 5) * 7 + g % 5)


def order_key(occurred_at: datetime, version: int, year: int) -> int:
    seconds = int((occurred_at - datetime(year, 8, 1, tzinfo=UTC)).total_seconds())
    return (min(max(seconds, 0), _KEY_SECONDS_MAX) << 6) | min(version, 63)


# ------------------------------------------------------------------------------------------------------
# State
# ------------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class SchoolYear:
    urn: str
    la_code: str
    year: int
    am: bytearray = field(default_factory=bytearray)
    pm: bytearray = field(default_factory=bytearray)
    am_keys: array[int] = field(default_factory=lambda: array("I"))
    pm_keys: array[int] = field(default_factory=lambda: array("I"))
    crossings: dict[tuple[int, int], int] = field(default_factory=dict)

    def grow(self, size: int) -> None:
        extra = size - len(self.am)
        if extra > 0:
            self.am.extend(bytes(extra))
            self.pm.extend(bytes(extra))
            self.am_keys.extend(array("I", bytes(4 * extra)))
            self.pm_keys.extend(array("I", bytes(4 * extra)))


@dataclass(slots=True)
class PupilAttendance:
    """Everything the processor keeps about one pupil, with a compact binary form for the faust table."""

    years: dict[tuple[str, int], SchoolYear] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        out = bytearray(struct.pack(">BB", _STATE_FORMAT, len(self.years)))
        for sy in self.years.values():
            n = len(sy.am)
            out += struct.pack(">6s3sHH", sy.urn.encode(), sy.la_code.encode(), sy.year, n)
            out += sy.am + sy.pm + _be(sy.am_keys) + _be(sy.pm_keys)
            out += struct.pack(">H", len(sy.crossings))
            for (rule, first), gen in sy.crossings.items():
                out += struct.pack(">BHH", rule, first, gen)
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> PupilAttendance:
        fmt, count = struct.unpack_from(">BB", data, 0)
        if fmt != _STATE_FORMAT:
            raise ValueError(f"unknown attendance state format {fmt}")
        pos = 2
        years: dict[tuple[str, int], SchoolYear] = {}
        for _ in range(count):
            urn_b, la_b, year, n = struct.unpack_from(">6s3sHH", data, pos)
            pos += 13
            sy = SchoolYear(urn_b.decode(), la_b.decode(), year)
            sy.am = bytearray(data[pos : pos + n])
            sy.pm = bytearray(data[pos + n : pos + 2 * n])
            pos += 2 * n
            sy.am_keys = _from_be(data[pos : pos + 4 * n])
            sy.pm_keys = _from_be(data[pos + 4 * n : pos + 8 * n])
            pos += 8 * n
            (n_cross,) = struct.unpack_from(">H", data, pos)
            pos += 2
            for _ in range(n_cross):
                rule, first, gen = struct.unpack_from(">BHH", data, pos)
                pos += 5
                sy.crossings[(rule, first)] = gen
            years[(sy.urn, sy.year)] = sy
        return cls(years)


def _be(values: array[int]) -> bytes:
    """Keys are stored big-endian whatever the machine, so a state written on one host reads on any other."""
    out = array("I", values)
    if sys.byteorder == "little":
        out.byteswap()
    return out.tobytes()


def _from_be(data: bytes) -> array[int]:
    out = array("I", data)
    if sys.byteorder == "little":
        out.byteswap()
    return out


# ------------------------------------------------------------------------------------------------------
# Marks and the engine
# ------------------------------------------------------------------------------------------------------


class SessionMark(NamedTuple):
    """The fields of an attendance-mark event the engine needs (cheap to build, cheap to pass around)."""

    upn: str
    school_urn: str
    la_code: str
    day: date
    pm: bool
    code: int  # codes.CODE_BYTE
    occurred_at: datetime
    version: int
    event_id: uuid.UUID

    @classmethod
    def from_event(cls, event: AttendanceMark) -> SessionMark:
        p = event.payload
        return cls(
            p.upn,
            p.school_urn,
            event.source.la_code or "",
            p.date,
            p.session == "PM",
            CODE_BYTE[p.code],
            event.occurred_at,
            p.version,
            event.event_id,
        )


class Outcome(NamedTuple):
    status: str  # applied | unchanged | stale | not_school_day
    events: list[Envelope]


class AttendanceEngine:
    """Applies marks to a pupil's state and returns the crossings and retractions they cause."""

    def __init__(self, calendars: CalendarRegistry, rules: AttendanceRules, keep_years: int = 2) -> None:
        self.calendars = calendars
        self.rules = rules
        self.keep_years = keep_years
        # (calendar, school year, weekday index) -> the weekday indices of its term: pure calendar arithmetic,
        # the same for every pupil, so worked out once (a few hundred entries per LA and year).
        self._terms: dict[tuple[SchoolCalendar, int, int], tuple[int, int]] = {}

    def apply(self, state: PupilAttendance, mark: SessionMark) -> Outcome:
        cal = self.calendars.calendar_for(mark.la_code)
        if not cal.is_school_day(mark.day):
            return Outcome("not_school_day", [])
        year = school_year_of(mark.day)
        idx = weekday_index(mark.day, year)
        sy = state.years.get((mark.school_urn, year))
        if sy is None:
            sy = state.years[(mark.school_urn, year)] = SchoolYear(mark.school_urn, mark.la_code, year)
            self._prune(state, year)
        sy.grow(idx + 1)
        codes, keys = (sy.pm, sy.pm_keys) if mark.pm else (sy.am, sy.am_keys)
        key = order_key(mark.occurred_at, mark.version, year)
        if codes[idx] and key <= keys[idx]:
            # An older version (or a duplicate) of a mark we already hold. Nothing is changed before this
            # return, so a stale mark leaves the state exactly as it was (a batch folds on in memory).
            return Outcome("stale", [])
        sy.la_code = mark.la_code
        keys[idx] = key
        if codes[idx] == mark.code:
            return Outcome("unchanged", [])
        codes[idx] = mark.code
        return Outcome("applied", self._evaluate(sy, mark, cal, idx))

    def _prune(self, state: PupilAttendance, year: int) -> None:
        for key in [k for k in state.years if k[1] <= year - self.keep_years]:
            del state.years[key]

    # -- rules ----------------------------------------------------------------------------------------

    def _evaluate(self, sy: SchoolYear, mark: SessionMark, cal: SchoolCalendar, idx: int) -> list[Envelope]:
        events: list[Envelope] = []
        term: TermCounts | None = None  # shared by the percentage rules: counted once per mark
        for rule in self.rules.for_la(sy.la_code):
            if rule.kind == "run":
                spans, scope = _runs(sy, rule), None
            elif rule.kind == "cumulative":
                spans, scope = _cumulative(sy, rule), None
            else:
                if term is None:
                    term = term_counts(sy, *self._term(cal, sy.year, idx))
                spans, scope = _percentage(sy, rule, term), term.t0
            events.extend(self._diff(sy, rule, spans, scope, mark))
        return events

    def _term(self, cal: SchoolCalendar, year: int, idx: int) -> tuple[int, int]:
        key = (cal, year, idx)
        window = self._terms.get(key)
        if window is None:
            window = self._terms[key] = term_window(cal, year, idx)
        return window

    def _diff(
        self, sy: SchoolYear, rule: CompiledRule, spans: list[Span], scope: int | None, mark: SessionMark
    ) -> list[Envelope]:
        """Retract active crossings (of this rule, in scope) outside every span that now meets the rule; emit
        one crossing for each span that has none standing inside it.

        A crossing stands while its first absent day still lies inside a qualifying span, so a run that grows
        backwards (marks for earlier days arriving late) keeps its crossing instead of churning.
        """
        if not spans and not sy.crossings:
            return []  # the common case: nothing met, nothing standing
        events: list[Envelope] = []
        ri = rule.index
        standing: set[int] = set()
        for (r, first), gen in list(sy.crossings.items()):
            if r != ri or not gen & 1 or (scope is not None and first != scope):
                continue
            if any(span.lo <= first <= span.hi for span in spans):
                standing.add(first)
                continue
            sy.crossings[(r, first)] = gen + 1  # inactive, same generation
            events.append(self._retraction(sy, rule, first, gen >> 1, mark))
        for span in spans:
            if any(span.lo <= first <= span.hi for first in standing):
                continue
            previous = sy.crossings.get((ri, span.first))
            gen = 1 if previous is None else previous + 1  # odd = active; generation = gen >> 1
            sy.crossings[(ri, span.first)] = gen
            events.append(self._crossing(sy, rule, span, gen >> 1, mark))
        return events

    @staticmethod
    def crossing_id(upn: str, urn: str, rule: CompiledRule, first: date, generation: int) -> uuid.UUID:
        name = f"{upn}|{urn}|{rule.rule.value}|{first.isoformat()}"
        return uuid.uuid5(EVENT_NAMESPACE, name if generation == 0 else f"{name}|{generation}")

    def _crossing(
        self, sy: SchoolYear, rule: CompiledRule, span: Span, generation: int, mark: SessionMark
    ) -> Envelope:
        first_date = index_date(span.first, sy.year)
        return AbsenceThresholdCrossed(
            event_id=self.crossing_id(mark.upn, sy.urn, rule, first_date, generation),
            occurred_at=mark.occurred_at,
            source=Source(system=SOURCE_SYSTEM, la_code=sy.la_code, school_urn=sy.urn),
            correlation_id=mark.event_id,
            payload=AbsenceThresholdCrossedPayload(
                child=ChildIdentity(upn=mark.upn),
                school_urn=sy.urn,
                rule=rule.rule,
                first_absent_date=first_date,
                last_absent_date=index_date(span.last, sy.year),
                school_days=max(1, min(span.days, 400)),
                percentage=span.percentage,
            ),
        )

    def _retraction(
        self, sy: SchoolYear, rule: CompiledRule, first: int, generation: int, mark: SessionMark
    ) -> Envelope:
        crossing = self.crossing_id(mark.upn, sy.urn, rule, index_date(first, sy.year), generation)
        return AbsenceThresholdRetracted(
            event_id=uuid.uuid5(EVENT_NAMESPACE, f"retract|{crossing}"),
            occurred_at=mark.occurred_at,
            source=Source(system=SOURCE_SYSTEM, la_code=sy.la_code, school_urn=sy.urn),
            correlation_id=mark.event_id,
            payload=AbsenceThresholdRetractedPayload(
                child=ChildIdentity(upn=mark.upn),
                school_urn=sy.urn,
                rule=rule.rule,
                retracts_event_id=str(crossing),
            ),
        )


class Span(NamedTuple):
    """Where a rule is met: weekday indices ``lo..hi`` bound it (between breaks, for a run); ``first`` and
    ``last`` are its first and last counted days, ``days`` the school days counted."""

    lo: int
    hi: int
    first: int
    last: int
    days: int
    percentage: float | None = None


def _runs(sy: SchoolYear, rule: CompiledRule) -> list[Span]:
    n = len(sy.am)
    # Per day: 1 = a session counts, 2 = a session breaks the run (OR of both sessions, one big-int OR).
    am = int.from_bytes(sy.am.translate(rule.run_table), "big")
    pm = int.from_bytes(sy.pm.translate(rule.run_table), "big")
    days = (am | pm).to_bytes(n, "big").translate(_DAY_LETTERS)
    if days.count(b"c") < rule.school_days:
        return []  # the common case (a pupil who attends): no regex needed
    spans: list[Span] = []
    for m in _SEGMENT.finditer(days):
        seg = m.group()
        count = seg.count(b"c")
        if count >= rule.school_days:
            lo = m.start()
            spans.append(Span(lo, m.end() - 1, lo + seg.find(b"c"), lo + seg.rfind(b"c"), count))
    return spans


def _cumulative(sy: SchoolYear, rule: CompiledRule) -> list[Span]:
    sessions = sum(sy.am.count(b) + sy.pm.count(b) for b in rule.code_bytes)
    if sessions < 2 * rule.school_days:
        return []
    firsts = [i for b in rule.code_bytes for i in (sy.am.find(b), sy.pm.find(b)) if i >= 0]
    lasts = [i for b in rule.code_bytes for i in (sy.am.rfind(b), sy.pm.rfind(b))]
    return [Span(0, len(sy.am) - 1, min(firsts), max(lasts), sessions // 2)]


def term_bounds(cal: SchoolCalendar, d: date) -> tuple[date, date]:
    """The term ``d`` falls in: from the LA's term dates, or a fixed split of the year when unconfigured."""
    if cal.terms is not None and cal.is_configured(d):
        for term in cal.terms.terms:
            if term.start <= d <= term.end:
                return term.start, term.end
    # Unconfigured (or between terms): autumn Aug-Dec, spring Jan-Apr, summer May-Jul.
    if d.month >= 8:
        return date(d.year, 8, 1), date(d.year, 12, 31)
    if d.month <= 4:
        return date(d.year, 1, 1), date(d.year, 4, 30)
    return date(d.year, 5, 1), date(d.year, 7, 31)


def term_window(cal: SchoolCalendar, year: int, idx: int) -> tuple[int, int]:
    """Weekday indices of the first school day and the last weekday of the term that weekday ``idx`` of
    school year ``year`` falls in (the last may lie beyond a pupil's marks)."""
    start, end = term_bounds(cal, index_date(idx, year))
    t0 = max(weekday_index(cal.add_school_days(max(start, date(year, 8, 1)), 0), year), 0)
    t1 = weekday_index(end - timedelta(days=max(end.weekday() - 4, 0)), year)
    return t0, t1


class TermCounts(NamedTuple):
    """A pupil's sessions in one term, as the percentage rules read them."""

    t0: int  # index of the term's first school day: the rule's scope and the crossing's first_absent_date
    am: bytes | bytearray  # per day "a" absent, "p" attended, "." neither
    pm: bytes | bytearray
    absent: int
    possible: int
    last: int  # index of the term's last marked day


def term_counts(sy: SchoolYear, t0: int, t1: int) -> TermCounts:
    t1 = min(t1, len(sy.am) - 1)
    am = sy.am[t0 : t1 + 1].translate(_PCT_TABLE)
    pm = sy.pm[t0 : t1 + 1].translate(_PCT_TABLE)
    absent = am.count(b"a") + pm.count(b"a")
    possible = absent + am.count(b"p") + pm.count(b"p")
    last = t0 + max(len(sy.am[t0 : t1 + 1].rstrip(b"\0")), len(sy.pm[t0 : t1 + 1].rstrip(b"\0"))) - 1
    return TermCounts(t0, am, pm, absent, possible, last)


def _percentage(sy: SchoolYear, rule: CompiledRule, term: TermCounts) -> list[Span]:
    """The span (if met) of the term the mark falls in (the scope of the rule is the term's ``t0``)."""
    t0, absent, possible = term.t0, term.absent, term.possible
    if _met(absent, possible, rule):
        return [Span(t0, t0, t0, max(term.last, t0), possible // 2 or 1, round(100 * absent / possible, 1))]
    if sy.crossings.get((rule.index, t0), 0) & 1 and _ever_met(term.am, term.pm, rule):
        # A crossing already emitted stands while the corrected marks still reached the threshold at some
        # point of the term; the share falling later (the pupil attends again) does not withdraw it.
        return [Span(t0, t0, t0, t0, 1)]
    return []


def _met(absent: int, possible: int, rule: CompiledRule) -> bool:
    return possible >= rule.min_sessions and absent * 100 >= rule.percent * possible


def _ever_met(am: bytes | bytearray, pm: bytes | bytearray, rule: CompiledRule) -> bool:
    absent = possible = 0
    for a, p in zip(am, pm, strict=True):
        for s in (a, p):
            if s == 0x61:  # "a"
                absent += 1
                possible += 1
            elif s == 0x70:  # "p"
                possible += 1
        if _met(absent, possible, rule):
            return True
    return False
