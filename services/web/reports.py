"""Report figures "as of" a date: from tracking's counts of the cases' spells (what the pages use), and the
same figures replayed from whole histories (tracking's /v1/reports/history: the reference they are tested
against).

A case's history is its list of spells: from each spell's start (event time) the case was in that state.
The state on a date is the state of the last spell that started before the end of that date (UTC), so a
report for a past date shows what the facts, in event time, said then, whatever arrived later.

Children missing education (CME) on a date: the case is in one of CME_STATES. Pure functions; no I/O.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

import yaml
from pydantic import BaseModel, Field

from shared.events.internal import CME_STATES
from shared.events.vocab import EHEReason, MissingReason
from shared.school_calendar import SchoolCalendar, month_ends

ALL_STATES = (
    "on_roll_at_risk",
    *CME_STATES,
    "transfer_pending",  # waiting for the named school's registration (an alert when it is overdue)
    "part_time_provision",  # not full-time: on the Ofsted list, not CME
    "in_education",
    "electively_home_educated",
    "left_area",
    "moved_abroad",
    "out_of_scope",
)
TWELVE_WEEKS = timedelta(weeks=12)
SCHOOL_DAY_BANDS = ((0, 10, "0-10"), (11, 20, "11-20"), (21, 60, "21-60"), (61, 10**6, "over 60"))
# Every reason category of the DfE return, in the vocabulary's order: a report lists each, 0 included, so a
# category nobody is in reads as a count of 0, not as a category the system cannot record.
REASONS: tuple[str, ...] = tuple(r.value for r in MissingReason)


class Spell(BaseModel):
    start: datetime
    state: str
    reason: str | None = None
    event_kind: str | None = None


class Detail(BaseModel):
    occurred_at: datetime
    event_kind: str | None = None
    codes: dict[str, str] = Field(default_factory=dict)


class CaseHistory(BaseModel):
    child_id: str
    case_id: str
    upn: str | None = None
    date_of_birth: date | None = None
    sex: str | None = None
    vulnerabilities: list[str] = Field(default_factory=list)
    state: str | None = None
    spells: list[Spell] = Field(default_factory=list)
    details: list[Detail] = Field(default_factory=list)


class Population(BaseModel):
    """An LA's whole school population, total and by vulnerable group (a per-LA input: docs/WEB.md)."""

    total: int = Field(ge=0)
    groups: dict[str, int] = Field(default_factory=dict)


def load_populations(path: str | None) -> dict[str, Population]:
    if not path:
        return {}
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    return {str(la): Population.model_validate(value) for la, value in data.items()}


def end_of(on: date) -> datetime:
    return datetime.combine(on + timedelta(days=1), time(0), tzinfo=UTC)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def spell_on(history: CaseHistory, on: date) -> Spell | None:
    cutoff = end_of(on)
    current = None
    for spell in sorted(history.spells, key=lambda s: _aware(s.start)):
        if _aware(spell.start) < cutoff:
            current = spell
    return current


def missing_since(history: CaseHistory, on: date) -> datetime | None:
    """Start of the unbroken run of CME spells the child is in on ``on`` (None if not CME then)."""
    cutoff = end_of(on)
    run_start: datetime | None = None
    for spell in sorted(history.spells, key=lambda s: _aware(s.start)):
        if _aware(spell.start) >= cutoff:
            break
        in_cme = spell.state in CME_STATES
        run_start = (run_start or _aware(spell.start)) if in_cme else None
    return run_start


def is_cme_on(history: CaseHistory, on: date) -> bool:
    spell = spell_on(history, on)
    return spell is not None and spell.state in CME_STATES


def year_group(dob: date | None, on: date) -> str:
    """National curriculum year on ``on``: age on 31 August before the academic year, minus 5 (R = age 4)."""
    if dob is None:
        return "unknown"
    start_year = on.year if on.month >= 9 else on.year - 1
    aug31 = date(start_year, 8, 31)
    age = aug31.year - dob.year - ((aug31.month, aug31.day) < (dob.month, dob.day))
    nc = age - 4
    if nc == 0:
        return "R"
    if 1 <= nc <= 11:
        return f"Y{nc}"
    return "outside compulsory school age"


@dataclass
class Snapshot:
    on: date
    cases: int
    by_state: dict[str, int]
    cme_total: int
    by_reason: dict[str, int]
    whereabouts_unknown: int
    awaiting_provision: int
    school_days_missing: dict[str, int]
    median_school_days_missing: float | None
    vulnerable: list[dict[str, object]] = field(default_factory=list)
    population_total: int | None = None


def _median(values: Sequence[int]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return float(ordered[mid]) if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def snapshot(
    histories: Iterable[CaseHistory], on: date, calendar: SchoolCalendar, population: Population | None
) -> Snapshot:
    """The snapshot replayed from whole histories (the reference ``snapshot_from`` is tested against)."""
    by_state: Counter[str] = Counter()
    by_reason: Counter[str] = Counter()
    bands: Counter[str] = Counter({label: 0 for _, _, label in SCHOOL_DAY_BANDS})
    days: list[int] = []
    flags: Counter[str] = Counter()
    cases = 0
    for history in histories:
        spell = spell_on(history, on)
        if spell is None:
            continue
        cases += 1
        by_state[spell.state] += 1
        if spell.state not in CME_STATES:
            continue
        by_reason[spell.reason or "not_recorded"] += 1
        flags.update(set(history.vulnerabilities))
        since = missing_since(history, on)
        if since is None:
            bands["unknown"] += 1
            continue
        n = max(0, calendar.school_days_between(since.date(), on))
        days.append(n)
        bands[next(label for lo, hi, label in SCHOOL_DAY_BANDS if lo <= n <= hi)] += 1
    return _snapshot(on, cases, by_state, by_reason, bands, days, flags, population)


def _snapshot(
    on: date,
    cases: int,
    by_state: Counter[str],
    by_reason: Counter[str],
    bands: Counter[str],
    days: list[int],
    flags: Counter[str],
    population: Population | None,
) -> Snapshot:
    cme_total = sum(by_state[s] for s in CME_STATES)
    vulnerable: list[dict[str, object]] = []
    groups = sorted(set(flags) | set(population.groups if population else {}))
    for group in groups:
        pop = population.groups.get(group) if population else None
        vulnerable.append(
            {
                "group": group,
                "cme": flags[group],
                "population": pop,
                "cme_per_1000": round(1000 * flags[group] / pop, 2) if pop else None,
                "share_of_cme_pct": round(100 * flags[group] / cme_total, 1) if cme_total else None,
                "share_of_population_pct": (
                    round(100 * pop / population.total, 1)
                    if pop and population and population.total
                    else None
                ),
            }
        )
    return Snapshot(
        on=on,
        cases=cases,
        by_state={s: by_state[s] for s in ALL_STATES if by_state[s]},
        cme_total=cme_total,
        by_reason=_every_reason(by_reason),
        whereabouts_unknown=by_state["whereabouts_unknown"],
        awaiting_provision=by_state["awaiting_provision"],
        school_days_missing=dict(bands),
        median_school_days_missing=_median(days),
        vulnerable=vulnerable,
        population_total=population.total if population else None,
    )


def _every_reason(counts: Counter[str]) -> dict[str, int]:
    """Counts by reason for every category (0 included), the largest first; an unknown code is kept."""
    names = [*REASONS, *sorted(set(counts) - set(REASONS))]
    return dict(sorted(((r, counts[r]) for r in names), key=lambda kv: -kv[1]))


def cme_rate_per_1000(snap: Snapshot) -> float | None:
    if not snap.population_total:
        return None
    return round(1000 * snap.cme_total / snap.population_total, 2)


# --- the list of children not in full-time education (Ofsted) ------------------------------------------

NOT_IN_FTE_HEADER = (
    "unique_id",
    "date_of_birth",
    "upn",
    "provision_type",
    "hours_per_week",
    "exclusion_type",
    "provision_start_date",
)


def _latest(details: Iterable[Detail], on: date, predicate: object) -> Detail | None:
    cutoff = end_of(on)
    found = None
    for d in sorted(details, key=lambda d: _aware(d.occurred_at)):
        if _aware(d.occurred_at) < cutoff and callable(predicate) and predicate(d):
            found = d
    return found


def _is_provision(d: Detail) -> bool:
    return (d.event_kind or "").startswith("provision-started")


def _exclusion_type(d: Detail) -> str | None:
    kind = d.event_kind or ""
    if kind.endswith("permanently-excluded"):
        return "permanent"
    return d.codes.get("exclusion_type")


def not_in_full_time_education(histories: Iterable[CaseHistory], on: date) -> list[tuple[str, ...]]:
    """Children on ``on`` either missing education or in part-time provision (the latest provision started
    by then is not full time). Exclusion type: the latest exclusion in the 12 months up to ``on``."""
    rows: list[tuple[str, ...]] = []
    for h in sorted(histories, key=lambda h: h.child_id):
        spell = spell_on(h, on)
        if spell is None:
            continue
        provision = _latest(h.details, on, _is_provision)
        part_time = spell.state == "part_time_provision" or (
            spell.state == "in_education"  # histories from before part-time had a state of its own
            and provision is not None
            and provision.codes.get("full_time", "True") == "False"
        )
        if spell.state not in CME_STATES and not part_time:
            continue
        exclusion = _latest(h.details, on, lambda d: _exclusion_type(d) is not None)
        if exclusion is not None and _aware(exclusion.occurred_at) < end_of(on) - timedelta(days=365):
            exclusion = None
        if part_time and provision is not None:
            ptype = provision.codes.get("provision_type", "")
            hours = provision.codes.get("hours_per_week", "")
            started = provision.codes.get("start_date", _aware(provision.occurred_at).date().isoformat())
        else:
            ptype, hours, started = "none", "0", ""
        rows.append(
            (
                h.child_id,
                h.date_of_birth.isoformat() if h.date_of_birth else "",
                h.upn or "",
                ptype,
                hours,
                (_exclusion_type(exclusion) or "") if exclusion else "",
                started,
            )
        )
    return rows


# --- the DfE termly CME return -----------------------------------------------------------------------------

DFE_HEADER = ("measure", "sex", "year_group", "time_missing", "reason", "count")


def time_missing_band(history: CaseHistory, census: date) -> str:
    since = missing_since(history, census)
    if since is None:
        return "unknown"
    return "12_weeks_or_less" if census - since.date() <= TWELVE_WEEKS else "over_12_weeks"


def cme_in_previous_year(history: CaseHistory, census: date) -> bool:
    """In a CME state at any moment of the 12 months up to and including census day."""
    window_start = end_of(census) - timedelta(days=366)
    spells = sorted(history.spells, key=lambda s: _aware(s.start))
    for i, spell in enumerate(spells):
        start = _aware(spell.start)
        end = _aware(spells[i + 1].start) if i + 1 < len(spells) else None
        if spell.state not in CME_STATES or start >= end_of(census):
            continue
        if end is None or end > window_start:
            return True
    return False


def dfe_return(histories: Sequence[CaseHistory], census: date) -> list[tuple[str, ...]]:
    on_day = [h for h in histories if is_cme_on(h, census)]
    by_sex_year: Counter[tuple[str, str]] = Counter(
        (h.sex or "U", year_group(h.date_of_birth, census)) for h in on_day
    )
    by_time: Counter[str] = Counter(time_missing_band(h, census) for h in on_day)
    by_reason: Counter[str] = Counter(
        (spell.reason if (spell := spell_on(h, census)) and spell.reason else "not_recorded") for h in on_day
    )
    previous = sum(1 for h in histories if cme_in_previous_year(h, census))
    return _dfe_rows(len(on_day), by_sex_year, by_time, by_reason, previous)


def _dfe_rows(
    on_day: int,
    by_sex_year: Counter[tuple[str, str]],
    by_time: Counter[str],
    by_reason: Counter[str],
    previous: int,
) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("cme_on_census_day", "", "", "", "", str(on_day))]
    rows += [
        ("cme_by_sex_and_year_group", sex, yg, "", "", str(n)) for (sex, yg), n in sorted(by_sex_year.items())
    ]
    rows += [
        ("cme_by_time_missing", "", "", band, "", str(by_time[band]))
        for band in ("12_weeks_or_less", "over_12_weeks", "unknown")
    ]
    reasons = [*REASONS, *sorted(set(by_reason) - set(REASONS))]
    rows += [("cme_by_primary_reason", "", "", "", reason, str(by_reason[reason])) for reason in reasons]
    rows.append(("cme_at_any_point_in_previous_year", "", "", "", "", str(previous)))
    return rows


# --- the DfE termly return's elective home education half -----------------------------------------------
# Followed: DfE "Elective home education" statistics, autumn term 2025/26 release, data guidance
# (explore-education-statistics): ehe_census.csv counts children in EHE on census date by sex, year group and
# primary reason for EHE, and the release counts children in EHE at any time in the previous academic year.
# The collection's own specification (COLLECT guide) was not reachable; its measures are taken from there.

EHE_STATE = "electively_home_educated"
EHE_REASONS: tuple[str, ...] = tuple(r.value for r in EHEReason)


def is_ehe_on(history: CaseHistory, on: date) -> bool:
    spell = spell_on(history, on)
    return spell is not None and spell.state == EHE_STATE


def ehe_reason_on(history: CaseHistory, on: date) -> str:
    """The parent's primary reason as the latest fact up to ``on`` stated it (notice, caseworker's entry)."""
    latest = _latest(history.details, on, lambda d: bool(d.codes.get("ehe_reason")))
    return latest.codes["ehe_reason"] if latest else EHEReason.UNKNOWN.value


def academic_year_before(census: date) -> tuple[date, date]:
    """1 September to 31 August of the academic year before the one ``census`` falls in."""
    start_year = (census.year if census.month >= 9 else census.year - 1) - 1
    return date(start_year, 9, 1), date(start_year + 1, 8, 31)


def ehe_during(history: CaseHistory, first: date, last: date) -> bool:
    """Electively home educated at any moment from the start of ``first`` to the end of ``last``."""
    window_start, window_end = end_of(first - timedelta(days=1)), end_of(last)
    spells = sorted(history.spells, key=lambda s: _aware(s.start))
    for i, spell in enumerate(spells):
        start = _aware(spell.start)
        end = _aware(spells[i + 1].start) if i + 1 < len(spells) else None
        if spell.state == EHE_STATE and start < window_end and (end is None or end > window_start):
            return True
    return False


def ehe_return(histories: Sequence[CaseHistory], census: date) -> list[tuple[str, ...]]:
    """The EHE half, rows in DFE_HEADER's columns (time_missing empty), replayed in event time."""
    on_day = [h for h in histories if is_ehe_on(h, census)]
    by_sex_year: Counter[tuple[str, str]] = Counter(
        (h.sex or "U", year_group(h.date_of_birth, census)) for h in on_day
    )
    by_reason: Counter[str] = Counter(ehe_reason_on(h, census) for h in on_day)
    first, last = academic_year_before(census)
    previous = sum(1 for h in histories if ehe_during(h, first, last))
    return _ehe_rows(len(on_day), by_sex_year, by_reason, previous)


def _ehe_rows(
    on_day: int, by_sex_year: Counter[tuple[str, str]], by_reason: Counter[str], previous: int
) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("ehe_on_census_day", "", "", "", "", str(on_day))]
    rows += [
        ("ehe_by_sex_and_year_group", sex, yg, "", "", str(n)) for (sex, yg), n in sorted(by_sex_year.items())
    ]
    reasons = [*EHE_REASONS, *sorted(set(by_reason) - set(EHE_REASONS))]
    rows += [("ehe_by_primary_reason", "", "", "", reason, str(by_reason[reason])) for reason in reasons]
    rows.append(("ehe_at_any_point_in_previous_academic_year", "", "", "", "", str(previous)))
    return rows


def termly_return(histories: Sequence[CaseHistory], census: date) -> list[tuple[str, ...]]:
    """The whole DfE termly collection: the elective home education half, then the CME half."""
    return ehe_return(histories, census) + dfe_return(histories, census)


# --- trends ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrendPoint:
    on: date
    cme: int
    whereabouts_unknown: int
    new_cme: int  # children who became CME during the month up to ``on``


def trends(histories: Sequence[CaseHistory], on: date, months: int = 12) -> list[TrendPoint]:
    points = []
    for end in month_ends(on, months):
        start = end.replace(day=1)
        cme = sum(1 for h in histories if is_cme_on(h, end))
        unknown = sum(1 for h in histories if (s := spell_on(h, end)) and s.state == "whereabouts_unknown")
        new = 0
        for h in histories:
            since = missing_since(h, end)
            if since is not None and since >= end_of(start - timedelta(days=1)):
                new += 1
        points.append(TrendPoint(end, cme, unknown, new))
    return points


# --- the same figures from tracking's counts in SQL (what the pages use: no history crosses the wire) ----
# Tracking keeps each case's spells as rows (tracking_spells) and counts them as of a day: GET
# /v1/reports/counts (the page), /v1/reports/return (the DfE termly return) and, a page of children at a time,
# /v1/reports/not-in-full-time-education. The functions above, over whole histories, are the reference these
# are tested against (tests/unit/test_report_counts.py).


class StateCount(BaseModel):
    state: str
    reason: str | None = None
    count: int


class SinceCount(BaseModel):
    since: date | None = None
    count: int


class MonthCount(BaseModel):
    on: date
    cme: int
    whereabouts_unknown: int
    new_cme: int


class ReportCounts(BaseModel):
    on: date
    by_state: list[StateCount]
    cme_since: list[SinceCount]
    cme_by_vulnerability: dict[str, int] = Field(default_factory=dict)
    months: list[MonthCount]


class ReturnGroup(BaseModel):
    sex: str | None = None
    date_of_birth: date | None = None
    reason: str | None = None
    since: date | None = None
    count: int


class ReturnCounts(BaseModel):
    on: date
    cme: list[ReturnGroup]
    cme_in_previous_year: int
    ehe: list[ReturnGroup]
    ehe_in_window: int


# One child of /v1/reports/not-in-full-time-education, positional (tracking's NOT_IN_FTE_COLUMNS): child id,
# UPN, date of birth, the spell on the day (start, state, reason), and its provision and exclusion facts up to
# the end of the day in event order (occurred_at, event kind, codes).
FTEFact = tuple[datetime, str | None, dict[str, str]]
FTEChild = tuple[str, str | None, date | None, datetime, str, str | None, list[FTEFact]]


class NotInFTEPage(BaseModel):
    rows: list[FTEChild]
    next_after: str | None = None


def snapshot_from(counts: ReportCounts, calendar: SchoolCalendar, population: Population | None) -> Snapshot:
    on = counts.on
    by_state: Counter[str] = Counter()
    by_reason: Counter[str] = Counter()
    bands: Counter[str] = Counter({label: 0 for _, _, label in SCHOOL_DAY_BANDS})
    days: list[int] = []
    for c in counts.by_state:
        by_state[c.state] += c.count
        if c.state in CME_STATES:
            by_reason[c.reason or "not_recorded"] += c.count
    for s in counts.cme_since:
        if s.since is None:
            bands["unknown"] += s.count
            continue
        n = max(0, calendar.school_days_between(s.since, on))
        days += [n] * s.count
        bands[next(label for lo, hi, label in SCHOOL_DAY_BANDS if lo <= n <= hi)] += s.count
    cases = sum(by_state.values())
    flags = Counter(counts.cme_by_vulnerability)
    return _snapshot(on, cases, by_state, by_reason, bands, days, flags, population)


def not_in_fte_from(children: Iterable[FTEChild], on: date) -> list[tuple[str, ...]]:
    """``not_in_full_time_education`` from tracking's rows of the children who may be listed."""
    cutoff = end_of(on)
    year_before = cutoff - timedelta(days=365)
    rows: list[tuple[str, ...]] = []
    for child_id, upn, dob, _, state, _, facts in sorted(children, key=lambda c: c[0]):
        before = [f for f in facts if _aware(f[0]) < cutoff]
        provision = next((f for f in reversed(before) if (f[1] or "").startswith("provision-started")), None)
        part_time = state == "part_time_provision" or (
            state == "in_education"
            and provision is not None
            and provision[2].get("full_time", "True") == "False"
        )
        if state not in CME_STATES and not part_time:
            continue
        exclusion = next((f for f in reversed(before) if _fact_exclusion(f) is not None), None)
        if exclusion is not None and _aware(exclusion[0]) < year_before:
            exclusion = None
        if part_time and provision is not None:
            codes = provision[2]
            ptype, hours = codes.get("provision_type", ""), codes.get("hours_per_week", "")
            started = codes.get("start_date", _aware(provision[0]).date().isoformat())
        else:
            ptype, hours, started = "none", "0", ""
        rows.append(
            (
                child_id,
                dob.isoformat() if dob else "",
                upn or "",
                ptype,
                hours,
                (_fact_exclusion(exclusion) or "") if exclusion else "",
                started,
            )
        )
    return rows


def _fact_exclusion(fact: FTEFact) -> str | None:
    return "permanent" if (fact[1] or "").endswith("permanently-excluded") else fact[2].get("exclusion_type")


def trends_from(counts: ReportCounts) -> list[TrendPoint]:
    return [TrendPoint(m.on, m.cme, m.whereabouts_unknown, m.new_cme) for m in counts.months]


def _sex_year(groups: Iterable[ReturnGroup], census: date) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    for g in groups:
        out[(g.sex or "U", year_group(g.date_of_birth, census))] += g.count
    return out


def dfe_return_from(counts: ReturnCounts) -> list[tuple[str, ...]]:
    census = counts.on
    by_time: Counter[str] = Counter()
    by_reason: Counter[str] = Counter()
    for g in counts.cme:
        band = (
            "unknown" if g.since is None
            else "12_weeks_or_less" if census - g.since <= TWELVE_WEEKS
            else "over_12_weeks"
        )  # fmt: skip
        by_time[band] += g.count
        by_reason[g.reason or "not_recorded"] += g.count
    on_day = sum(g.count for g in counts.cme)
    return _dfe_rows(on_day, _sex_year(counts.cme, census), by_time, by_reason, counts.cme_in_previous_year)


def ehe_return_from(counts: ReturnCounts) -> list[tuple[str, ...]]:
    by_reason: Counter[str] = Counter()
    for g in counts.ehe:
        by_reason[g.reason or EHEReason.UNKNOWN.value] += g.count
    on_day = sum(g.count for g in counts.ehe)
    return _ehe_rows(on_day, _sex_year(counts.ehe, counts.on), by_reason, counts.ehe_in_window)


def termly_return_from(counts: ReturnCounts) -> list[tuple[str, ...]]:
    return ehe_return_from(counts) + dfe_return_from(counts)


def to_csv(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        # Neutralise spreadsheet formulas: a cell starting with = + - @ is prefixed with a quote.
        writer.writerow(["'" + c if c[:1] in ("=", "+", "-", "@") else c for c in row])
    return buffer.getvalue()
