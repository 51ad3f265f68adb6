"""A deterministic, seeded synthetic England: schools, pupils and a school year of inbound events for N LAs.

For benchmarks and load tests. Every child is invented (names from small built-in lists); identifiers are
valid (real DfE LA numbers, 6-digit URNs, UPNs with correct check letters). Proportions are public figures
(../shared/DOMAIN.md and DfE statistics, each cited at its constant below and in docs/PERFORMANCE.md); where
no public figure exists the constant says "assumption".

Output: inbound event dicts (the JSON the referral API accepts) in event-time order per child, and in
event-time order overall, so they can feed the HTTP API, the intake topic or the pure state machine.

    pop = generate(las=2, pupils_per_la=5_000, seed=7)
    for event in pop.envelopes(): ...            # validated shared.events envelopes
    pop.by_child()[upn]                          # one child's events, oldest first

Same seed and sizes give the same output, byte for byte (no clock, no global random state).
"""

from __future__ import annotations

import functools
import math
import random
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from devtools.samples import make_upn
from shared.events.catalogue import decode_inbound
from shared.events.envelope import Envelope
from shared.identifiers import LA_CODES

# --- Scale (DOMAIN.md "Scale"): 9,092,073 pupils in 24,453 schools, 153 LAs (January 2024). -------------
NATIONAL_PUPILS = 9_092_073
NATIONAL_SCHOOLS = 24_453
NATIONAL_LAS = 153
PUPILS_PER_SCHOOL = NATIONAL_PUPILS / NATIONAL_SCHOOLS  # ~372

# --- Missing education (DOMAIN.md "Reports": census day 2024 39,200 CME = 0.5% of the age group). --------
# Used as the share of pupils with a CME episode in the generated year (the census-day stock; the flow over a
# year is larger, the Children's Commissioner counts 11,500+ new cases a year on top of the stock).
CME_RATE = 0.005

# Reasons children are missing education: NCB 2014 (45 LAs, one day, 3,396 children), DOMAIN.md.
CME_REASONS: dict[str, float] = {
    "awaiting_place": 0.434,
    "whereabouts_unknown": 0.301,
    "left_la": 0.069,
    "moved_abroad": 0.054,
    "gypsy_roma_traveller": 0.024,
    "failed_to_enrol_or_transition": 0.018,
    "elective_home_education": 0.013,
    "sen": 0.010,
    "health": 0.003,
    "excluded": 0.001,
    "pregnant_or_young_parent": 0.001,
    "not_recorded": 0.048,
    "other": 0.023,
}

# --- Who is at risk: base rates in all pupils, and the over-representation among CME. ------------------
# Base rates (DfE statistics, not in DOMAIN.md): pupils with SEN 18.4% (Special educational needs in England,
# January 2024: SEN support 13.6% + EHCP 4.8%); living in the most deprived quintile of neighbourhoods 20% (by
# definition of a quintile); children in need ~3.3% (Characteristics of children in need 2024: ~333 per
# 10,000).
SEN_RATE = 0.184
EHCP_SHARE_OF_SEN = 0.048 / 0.184
DEPRIVED_RATE = 0.20
CHILD_IN_NEED_RATE = 0.033
# Children's Commissioner 2024 (DOMAIN.md "Who is at risk"): children whose last known destination was CME
# were 1.4x as likely to have SEN, 1.5x as likely to live in the most deprived neighbourhoods, 2.7x as likely
# to be a child in need. Applied as P(flag | CME) = ratio x base rate, with P(flag | not CME) lowered so the
# overall rate stays the base rate.
SEN_RATIO_CME = 1.4
DEPRIVED_RATIO_CME = 1.5
CHILD_IN_NEED_RATIO_CME = 2.7

# --- Absence and exclusion (DfE statistics, not in DOMAIN.md). ------------------------------------------
# Pupil absence in schools in England 2023/24: persistent absence (10%+ of sessions) ~20% of pupils, severe
# absence (50%+) ~2.2%. Checked against DfE "Pupil attendance in schools" (explore-education-statistics:
# autumn 2023/24 persistent 20.1%, spring 21.8%) and EPI's reading of the spring 2023/24 release (severe
# 2.2%). Each becomes one absence-threshold-crossed event (the attendance service reports a crossing once).
PERSISTENT_ABSENCE_RATE = 0.20
SEVERE_ABSENCE_RATE = 0.022
# Suspensions and permanent exclusions in England 2022/23: suspension rate 9.33 per 100 pupils (events, not
# pupils), permanent exclusion rate 0.11 per 100 pupils.
SUSPENSIONS_PER_PUPIL = 0.0933
PERMANENT_EXCLUSION_RATE = 0.0011

# --- Moves and home education. ------------------------------------------------------------------------
# EHE: 126,000 children (autumn 2025, DOMAIN.md) / 9,092,073 pupils = 1.39%. Used as the share of pupils
# whose school is notified of home education in the year: the stock, an upper bound for the yearly flow.
EHE_RATE = 126_000 / NATIONAL_PUPILS
# Moves between LAs and in-year school moves within an LA: assumption (no public figure in DOMAIN.md; ONS
# internal-migration tables put moves of 5-15 year olds between LAs at a few per cent a year).
MOVE_BETWEEN_LAS_RATE = 0.025
MOVE_WITHIN_LA_RATE = 0.03

SCHOOL_YEAR_START = date(2024, 9, 2)  # autumn term 2024 (the year the absence figures cover)
SCHOOL_YEAR_DAYS = 320  # to mid-July 2025

FORENAMES = (
    "Olivia",
    "Amelia",
    "Isla",
    "Ava",
    "Mia",
    "Ivy",
    "Lily",
    "Freya",
    "Florence",
    "Sophia",
    "Aisha",
    "Zara",
    "Noah",
    "Oliver",
    "George",
    "Arthur",
    "Muhammad",
    "Leo",
    "Harry",
    "Oscar",
    "Archie",
    "Henry",
    "Jakub",
    "Kacper",
    "Amara",
    "Priya",
    "Tomasz",
    "Ruby",
    "Ellie",
    "Yusuf",
)
SURNAMES = (
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Williams",
    "Wilson",
    "Johnson",
    "Davies",
    "Patel",
    "Robinson",
    "Wright",
    "Thompson",
    "Evans",
    "Walker",
    "White",
    "Roberts",
    "Green",
    "Hall",
    "Khan",
    "Ahmed",
    "Nowak",
    "Kowalski",
    "Okafor",
    "Mensah",
    "Singh",
    "Hughes",
    "Edwards",
    "Clarke",
    "Lewis",
    "Murphy",
)
# Postcode areas (illustrative): the "deprived" list is used for pupils living in the most deprived quintile.
POSTCODE_AREAS = ("BS", "M", "B", "LS", "NE", "L", "S", "NG", "SO", "CB", "OX", "EX", "YO", "LE", "CV")
POSTCODE_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # inward-code letters (no C, I, K, M, O, V)
COUNTRIES = ("PL", "RO", "IN", "PK", "NG", "IE", "ES", "PT", "LT", "US")


@dataclass(frozen=True)
class School:
    urn: str
    la_code: str
    estab: int


@dataclass(frozen=True)
class Pupil:
    upn: str
    la_code: str
    school_urn: str
    forename: str
    surname: str
    date_of_birth: date
    sex: str
    postcode: str
    year_group: int
    sen: str | None  # None, "sen_support" or "ehcp"
    deprived: bool
    child_in_need: bool
    cme_reason: str | None  # the NCB category of the pupil's CME episode this year, if any

    def identity(self) -> dict[str, Any]:
        """The child block of an inbound event (what a school's MIS sends)."""
        vulnerabilities = [v for v in (self.sen, "child_in_need" if self.child_in_need else None) if v]
        if self.cme_reason in ("gypsy_roma_traveller", "pregnant_or_young_parent"):
            vulnerabilities.append(self.cme_reason)
        return {
            "upn": self.upn,
            "forename": self.forename,
            "surname": self.surname,
            "date_of_birth": self.date_of_birth.isoformat(),
            "sex": self.sex,
            "postcode": self.postcode,
            "year_group": str(self.year_group),
            "vulnerabilities": vulnerabilities,
        }


@dataclass
class Population:
    seed: int
    la_codes: list[str]
    schools: list[School]
    pupils: list[Pupil]
    events: list[dict[str, Any]] = field(default_factory=list)  # inbound event dicts, event-time order

    def envelopes(self) -> Iterator[Envelope]:
        """The events as validated shared.events envelopes (validation costs ~30 us an event)."""
        for event in self.events:
            yield decode_inbound(event)

    def by_child(self) -> dict[str, list[dict[str, Any]]]:
        """Events per child (by UPN), each list in event-time order."""
        out: dict[str, list[dict[str, Any]]] = {}
        for event in self.events:
            out.setdefault(event["payload"]["child"]["upn"], []).append(event)
        return out


def _at(day: date, minute: int) -> str:
    return (datetime(day.year, day.month, day.day, 8, 0, tzinfo=UTC) + timedelta(minutes=minute)).isoformat()


def _conditional(rate: float, ratio: float, cme_rate: float) -> tuple[float, float]:
    """P(flag | CME) and P(flag | not CME) so that P(flag | CME) = ratio x rate and the overall rate stays."""
    in_cme = min(1.0, ratio * rate)
    outside = (rate - cme_rate * in_cme) / (1 - cme_rate)
    return in_cme, outside


def _weighted(rng: random.Random, table: dict[str, float]) -> str:
    return rng.choices(list(table), weights=list(table.values()), k=1)[0]


class _Builder:
    """Holds the random stream and the id counters of one generation run."""

    def __init__(self, seed: int, la_codes: list[str]) -> None:
        self.rng = random.Random(seed)
        self.la_codes = la_codes
        self.events: list[tuple[str, str, int, dict[str, Any]]] = []  # (occurred_at, upn, seq, event)
        self.seq = 0

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def day(self, after: date | None = None, within: int = SCHOOL_YEAR_DAYS) -> date:
        start = after or SCHOOL_YEAR_START
        d = start + timedelta(days=self.rng.randint(1 if after else 0, within))
        while d.weekday() >= 5:  # schools and LA teams report on weekdays
            d += timedelta(days=1)
        return d

    def emit(
        self,
        pupil: Pupil,
        event_type: str,
        on: date,
        payload: dict[str, Any],
        *,
        la: str | None = None,
        school_urn: str | None = None,
        system: str = "SIMS",
    ) -> None:
        self.seq += 1
        occurred = _at(on, self.rng.randint(0, 600))
        event = {
            "event_id": self.uuid(),
            "event_type": event_type,
            "occurred_at": occurred,
            "source": {"system": system, "la_code": la or pupil.la_code, "school_urn": school_urn},
            "payload": {"child": pupil.identity(), **payload},
        }
        self.events.append((occurred, pupil.upn, self.seq, event))

    def other_la(self, la: str) -> str:
        # Moves go to another generated LA if any (so its tracking sees the arrival), else anywhere.
        pool = [c for c in self.la_codes if c != la] or sorted(LA_CODES - {la})
        return self.rng.choice(pool)


def _schools_for(la_index: int, la_code: str, pupils: int) -> list[School]:
    count = max(1, math.ceil(pupils / PUPILS_PER_SCHOOL))
    if count > 1500:
        raise ValueError("at most 1500 schools (~558,000 pupils) per LA")
    # URNs: 6 digits starting 1-3, unique across LAs (a block of 1500 per LA index).
    return [School(str(100000 + la_index * 1500 + i), la_code, 2000 + i) for i in range(count)]


def _postcode(rng: random.Random, deprived: bool) -> str:
    areas = POSTCODE_AREAS[:5] if deprived else POSTCODE_AREAS[5:]
    letters = rng.choice(POSTCODE_LETTERS) + rng.choice(POSTCODE_LETTERS)
    return f"{rng.choice(areas)}{rng.randint(1, 20)} {rng.randint(1, 9)}{letters}"


def _dob(rng: random.Random, year_group: int) -> date:
    # Year N (1..11) in 2024/25: born 1 Sep (2024 - N - 5) .. 31 Aug (2024 - N - 4): compulsory school age.
    start = date(SCHOOL_YEAR_START.year - year_group - 5, 9, 1)
    return start + timedelta(days=rng.randint(0, 364))


def _pupils_for(b: _Builder, schools: Sequence[School], count: int) -> list[Pupil]:
    rng = b.rng
    sen_cme, sen_other = _conditional(SEN_RATE, SEN_RATIO_CME, CME_RATE)
    dep_cme, dep_other = _conditional(DEPRIVED_RATE, DEPRIVED_RATIO_CME, CME_RATE)
    cin_cme, cin_other = _conditional(CHILD_IN_NEED_RATE, CHILD_IN_NEED_RATIO_CME, CME_RATE)
    serials: dict[tuple[int, int], int] = {}
    pupils: list[Pupil] = []
    for i in range(count):
        school = schools[i % len(schools)]
        year_group = rng.randint(1, 11)
        entry_year = SCHOOL_YEAR_START.year - year_group + 1  # joined in Year 1 (the UPN's year digits)
        serial = serials[(school.estab, entry_year)] = serials.get((school.estab, entry_year), 0) + 1
        if serial > 999:
            raise ValueError("more than 999 pupils of one entry year in one school")
        cme = rng.random() < CME_RATE
        sen_p, dep_p, cin_p = (sen_cme, dep_cme, cin_cme) if cme else (sen_other, dep_other, cin_other)
        sen = None
        if rng.random() < sen_p:
            sen = "ehcp" if rng.random() < EHCP_SHARE_OF_SEN else "sen_support"
        deprived = rng.random() < dep_p
        pupils.append(
            Pupil(
                upn=make_upn(school.la_code, school.estab, entry_year, serial),
                la_code=school.la_code,
                school_urn=school.urn,
                forename=rng.choice(FORENAMES),
                surname=rng.choice(SURNAMES),
                date_of_birth=_dob(rng, year_group),
                sex=rng.choice("FM"),
                postcode=_postcode(rng, deprived),
                year_group=year_group,
                sen=sen,
                deprived=deprived,
                child_in_need=rng.random() < cin_p,
                cme_reason=_weighted(rng, CME_REASONS) if cme else None,
            )
        )
    return pupils


def _left_roll(b: _Builder, p: Pupil, on: date, ground: str, destination: dict[str, Any]) -> None:
    b.emit(
        p,
        "pupil-left-roll",
        on,
        {
            "school_urn": p.school_urn,
            "deletion_ground": ground,
            "leaving_date": on.isoformat(),
            "destination": destination,
        },
        school_urn=p.school_urn,
    )


def _la_event(b: _Builder, p: Pupil, event_type: str, on: date, payload: dict[str, Any]) -> None:
    b.emit(p, event_type, on, payload, system="cme-team")


def _placed(b: _Builder, p: Pupil, after: date, schools: Sequence[School]) -> None:
    """A place is offered and taken up (most CME episodes end this way)."""
    new_school = b.rng.choice(schools).urn
    offered = b.day(after, 30)
    _la_event(
        b,
        p,
        "place-offered",
        offered,
        {"provision_type": "school", "school_urn": new_school, "offered_on": offered.isoformat()},
    )
    start = b.day(offered, 20)
    _la_event(
        b,
        p,
        "provision-started",
        start,
        {
            "provision_type": "school",
            "school_urn": new_school,
            "start_date": start.isoformat(),
            "hours_per_week": 32.5,
        },
    )


def _cme_episode(b: _Builder, p: Pupil, schools: Sequence[School]) -> None:
    """The events of one CME episode, by its NCB reason category."""
    reason = p.cme_reason
    unknown = {"known": False, "ctf_destination": "XXXXXXX"}
    start = b.day(within=SCHOOL_YEAR_DAYS - 60)
    if reason in ("failed_to_enrol_or_transition", "health", "other"):
        referrer = {"health": "health", "other": "other_agency"}.get(reason or "", "la_admissions")
        _la_event(
            b,
            p,
            "referral-received",
            start,
            {"referrer_type": referrer, "concern": "Not on any school roll."},
        )
        _placed(b, p, start, schools)
    elif reason == "whereabouts_unknown":
        _left_roll(b, p, start, "i", unknown)
        visit = b.day(start, 10)
        _la_event(b, p, "enquiry-recorded", visit, {"enquiry_type": "home_visit", "outcome": "no_response"})
        since = b.day(visit, 10)
        _la_event(
            b,
            p,
            "whereabouts-unknown",
            since,
            {"since": since.isoformat(), "enquiries_made": ["home_visit", "school2school"]},
        )
        if b.rng.random() < 0.5:  # about half are found again within the year (assumption)
            found = b.day(since, 40)
            _la_event(b, p, "child-located", found, {"located_on": found.isoformat(), "la_code": p.la_code})
    elif reason == "left_la":
        _left_roll(b, p, start, "i", {"known": True, "la_code": b.other_la(p.la_code)})
    elif reason == "moved_abroad":
        country = b.rng.choice(COUNTRIES)
        _left_roll(b, p, start, "i", {"known": True, "country": country})
        moved = b.day(start, 20)
        _la_event(
            b,
            p,
            "moved-abroad",
            moved,
            {"country": country, "moved_on": moved.isoformat(), "confirmed": b.rng.random() < 0.6},
        )
    elif reason == "elective_home_education":
        b.emit(
            p,
            "home-education-notified",
            start,
            {"school_urn": p.school_urn, "notified_on": start.isoformat()},
            school_urn=p.school_urn,
        )
    elif reason == "excluded":
        b.emit(
            p,
            "exclusion-issued",
            start,
            {"school_urn": p.school_urn, "exclusion_type": "permanent", "start_date": start.isoformat()},
            school_urn=p.school_urn,
        )
        _placed(b, p, start, schools)
    else:  # awaiting place, GRT, SEN, pregnant, not recorded: off roll to an unknown destination, then placed
        _left_roll(b, p, start, "i", unknown)
        if reason != "not_recorded":
            _placed(b, p, start, schools)


def _year_of(b: _Builder, p: Pupil, schools: Sequence[School]) -> None:
    """Everything that happens to one pupil in the year, by the public rates. A change of roll (exclusion,
    home education, a move) is drawn first; absence and suspensions fall before it, at the old school."""
    rng = b.rng
    if p.cme_reason is not None:
        _cme_episode(b, p, schools)
        return
    roll = rng.random()
    end = SCHOOL_YEAR_START + timedelta(days=SCHOOL_YEAR_DAYS)
    change: Callable[[date], None] | None = None
    if roll < PERMANENT_EXCLUSION_RATE:
        end = b.day(within=SCHOOL_YEAR_DAYS - 60)
        change = functools.partial(_permanently_excluded, b, p, schools)
    elif roll < PERMANENT_EXCLUSION_RATE + EHE_RATE:
        end = b.day(within=SCHOOL_YEAR_DAYS - 5)
        change = functools.partial(_home_educated, b, p)
    elif roll < PERMANENT_EXCLUSION_RATE + EHE_RATE + MOVE_BETWEEN_LAS_RATE:
        end = b.day(within=SCHOOL_YEAR_DAYS - 30)
        change = functools.partial(_moved_la, b, p)
    elif roll < PERMANENT_EXCLUSION_RATE + EHE_RATE + MOVE_BETWEEN_LAS_RATE + MOVE_WITHIN_LA_RATE:
        end = b.day(within=SCHOOL_YEAR_DAYS - 10)
        change = functools.partial(_moved_school, b, p, schools)
    on_roll_days = max(1, (end - SCHOOL_YEAR_START).days - 1)
    if rng.random() < PERSISTENT_ABSENCE_RATE and on_roll_days > 41:
        severe = rng.random() < SEVERE_ABSENCE_RATE / PERSISTENT_ABSENCE_RATE
        last = b.day(SCHOOL_YEAR_START + timedelta(days=40), on_roll_days - 41)
        if last < end:
            b.emit(
                p,
                "absence-threshold-crossed",
                last,
                {
                    "school_urn": p.school_urn,
                    "rule": "severe_50_percent" if severe else "persistent_10_percent",
                    "first_absent_date": SCHOOL_YEAR_START.isoformat(),
                    "last_absent_date": last.isoformat(),
                    "school_days": 20,
                    "percentage": 55.0 if severe else 12.5,
                },
                school_urn=p.school_urn,
            )
    # Suspension events: Poisson with the national mean (a few pupils have several).
    for _ in range(_poisson(rng, SUSPENSIONS_PER_PUPIL)):
        on = b.day(within=on_roll_days)
        if on < end:
            b.emit(
                p,
                "exclusion-issued",
                on,
                {
                    "school_urn": p.school_urn,
                    "exclusion_type": "suspension",
                    "start_date": on.isoformat(),
                    "school_days": rng.randint(1, 5),
                },
                school_urn=p.school_urn,
            )
    if change is not None:
        change(end)


def _permanently_excluded(b: _Builder, p: Pupil, schools: Sequence[School], on: date) -> None:
    b.emit(
        p,
        "exclusion-issued",
        on,
        {"school_urn": p.school_urn, "exclusion_type": "permanent", "start_date": on.isoformat()},
        school_urn=p.school_urn,
    )
    _placed(b, p, on, schools)


def _home_educated(b: _Builder, p: Pupil, on: date) -> None:
    b.emit(
        p,
        "home-education-notified",
        on,
        {"school_urn": p.school_urn, "notified_on": on.isoformat()},
        school_urn=p.school_urn,
    )


def _moved_la(b: _Builder, p: Pupil, on: date) -> None:
    dest = b.other_la(p.la_code)
    _la_event(b, p, "moved-out-of-area", on, {"new_la_code": dest, "moved_on": on.isoformat()})
    if dest in b.la_codes:  # the new LA's school registers the child
        new_school = str(100000 + b.la_codes.index(dest) * 1500)
        arrived = b.day(on, 15)
        b.emit(
            p,
            "pupil-registered",
            arrived,
            {"school_urn": new_school, "entry_date": arrived.isoformat()},
            la=dest,
            school_urn=new_school,
        )


def _moved_school(b: _Builder, p: Pupil, schools: Sequence[School], on: date) -> None:
    # Another school: a deletion under ground (a) naming the school being left is refused at intake.
    new_school = b.rng.choice([s for s in schools if s.urn != p.school_urn] or schools).urn
    _left_roll(b, p, on, "a", {"known": True, "school_urn": new_school})
    joined = on + timedelta(days=1)
    b.emit(
        p,
        "pupil-registered",
        joined,
        {"school_urn": new_school, "entry_date": joined.isoformat()},
        school_urn=new_school,
    )


def _poisson(rng: random.Random, mean: float) -> int:
    limit, k, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def choose_las(n: int, seed: int) -> list[str]:
    """``n`` real DfE LA numbers, the same for the same seed."""
    if not 1 <= n <= len(LA_CODES):
        raise ValueError(f"between 1 and {len(LA_CODES)} LAs")
    return sorted(random.Random(seed).sample(sorted(LA_CODES), n))


def generate(las: int | Sequence[str] = 1, pupils_per_la: int = 10_000, seed: int = 1) -> Population:
    """Schools, pupils and a school year of events for ``las`` LAs (a count or the LA numbers)."""
    la_codes = choose_las(las, seed) if isinstance(las, int) else list(las)
    b = _Builder(seed, la_codes)
    schools: list[School] = []
    pupils: list[Pupil] = []
    for index, la in enumerate(la_codes):
        la_schools = _schools_for(index, la, pupils_per_la)
        schools += la_schools
        la_pupils = _pupils_for(b, la_schools, pupils_per_la)
        pupils += la_pupils
        for pupil in la_pupils:
            _year_of(b, pupil, la_schools)
    b.events.sort(key=lambda e: (e[0], e[2]))  # event time, then generation order (per child it is causal)
    return Population(seed, la_codes, schools, pupils, [e[3] for e in b.events])
