"""The DfE termly return's elective home education half for a synthetic LA (devtools.synthetic plus parents'
notices, caseworkers' entries and registrations), replayed in event time from tracking's history, checked
against counts made independently over the case store's tables (timeline rows and children, by SQL)."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from devtools.synthetic import Population, generate
from services.tracking.cases import ChildRecord, apply_child_fact, new_record
from services.tracking.identity import IdentityResolver
from services.tracking.models import TrackingChild, TrackingTimelineEntry
from services.tracking.projection import project
from services.tracking.stream.app import MIGRATIONS
from services.web import reports
from shared.db import make_engine, migrate
from shared.events.catalogue import decode_inbound
from shared.events.envelope import Source
from shared.events.internal import ChildFact, ChildFactPayload
from shared.events.vocab import EHEReason
from tests.unit.test_web_reports import histories

CENSUS_DAYS = (date(2025, 1, 16), date(2025, 5, 15), date(2025, 10, 2))
PARENT = {"name": "A Parent", "home_address": "1 Synthetic Road", "provides_education": True}


def _event(kind: str, child: dict[str, Any], la: str, on: date, payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{kind}:{child['upn']}:{on}")),
        "event_type": kind,
        "occurred_at": datetime(on.year, on.month, on.day, 11, 0, tzinfo=UTC).isoformat(),
        "source": {"system": "LA portal", "la_code": la},
        "payload": {"child": child, **payload},
    }


def register_events(pop: Population) -> list[dict[str, Any]]:
    """Parents' notices for pupils with no CME episode, each reason in turn; a third later found unsuitable by
    a caseworker, a third registered at a school again."""
    out: list[dict[str, Any]] = []
    reasons = list(EHEReason)
    quiet = [p for p in pop.pupils if p.cme_reason is None][::40]
    for n, p in enumerate(quiet):
        on = date(2024, 9, 16) + timedelta(days=(n * 7) % 300)
        child = {**p.identity(), "address": "1 Synthetic Road"}
        reason = reasons[n % len(reasons)].value
        out.append(_event("not-in-school-notice", child, p.la_code, on, {
            "notified_on": on.isoformat(), "arrangement": "home_education", "parents": [PARENT],
            "ehe_reason": reason,
        }))  # fmt: skip
        later = on + timedelta(days=60)
        if n % 3 == 1:
            out.append(_event("register-entry-recorded", child, p.la_code, later, {
                "recorded_on": later.isoformat(), "suitability": "unsuitable",
            }))  # fmt: skip
        elif n % 3 == 2:
            out.append(_event("pupil-registered", child, p.la_code, later, {
                "school_urn": p.school_urn, "entry_date": later.isoformat(),
            }))  # fmt: skip
    return out


def feed(engine: Engine, events: list[dict[str, Any]]) -> None:
    """Resolve, fold and project each event in event-time order, as the tracking worker does."""
    records: dict[str, ChildRecord] = {}
    resolver = IdentityResolver(engine)
    for data in sorted(events, key=lambda e: (e["occurred_at"], e["event_id"])):
        inbound = decode_inbound(data)
        la = str(inbound.source.la_code)
        resolution = resolver.resolve(inbound)
        event = ChildFact(
            event_id=inbound.event_id,
            occurred_at=inbound.occurred_at,
            source=Source(system="test", la_code=la),
            payload=ChildFactPayload(
                child_id=uuid.UUID(resolution.child_id), la_code=la, match=resolution.match,
                fact=inbound.model_dump(mode="json"),
            ),
        )  # fmt: skip
        record = records.get(resolution.child_id) or new_record(resolution.child_id, la)
        outcome = apply_child_fact(record, event)
        project(engine, outcome)
        records[resolution.child_id] = outcome.record


@pytest.fixture(scope="module")
def synthetic_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, str]:
    path: Path = tmp_path_factory.mktemp("ehe") / "tracking.db"
    url = f"sqlite:///{path}"
    migrate(url, MIGRATIONS, "tracking")
    engine = make_engine(url)
    pop = generate(las=1, pupils_per_la=3000, seed=5)
    feed(engine, pop.events + register_events(pop))
    return engine, pop.la_codes[0]


# --- the independent count: straight from the stored rows, none of the reports' or history's code ---------


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _rows_by_child(engine: Engine, la: str) -> dict[str, list[TrackingTimelineEntry]]:
    with Session(engine) as session:
        rows = session.exec(select(TrackingTimelineEntry).where(TrackingTimelineEntry.la_code == la)).all()
    out: dict[str, list[TrackingTimelineEntry]] = {}
    for row in rows:
        out.setdefault(row.child_id, []).append(row)
    for child_rows in out.values():
        child_rows.sort(key=lambda r: (_utc(r.occurred_at), r.event_id))
    return out


def _state_before(rows: list[TrackingTimelineEntry], moment: datetime) -> str | None:
    """The facts arrived in event-time order, so each row's to_state is the state from its fact on."""
    state = None
    for row in rows:
        if _utc(row.occurred_at) >= moment:
            break
        state = row.to_state
    return state


def _nc_year(dob: date, census: date) -> str:
    start = census.year if census.month >= 9 else census.year - 1
    nc = start - dob.year - 5 + (1 if dob.month < 9 else 0)
    return "R" if nc == 0 else f"Y{nc}" if 1 <= nc <= 11 else "outside compulsory school age"


def independent_counts(engine: Engine, la: str, census: date) -> dict[tuple[str, str, str, str], int]:
    by_child = _rows_by_child(engine, la)
    with Session(engine) as session:
        children = {c.child_id: c for c in session.exec(select(TrackingChild)).all()}
    end = datetime(census.year, census.month, census.day, tzinfo=UTC) + timedelta(days=1)
    counts: Counter[tuple[str, str, str, str]] = Counter()
    year_start = datetime(census.year - (1 if census.month >= 9 else 2), 9, 1, tzinfo=UTC)
    year_end = year_start.replace(year=year_start.year + 1)
    for child_id, rows in by_child.items():
        if _state_before(rows, end) == "electively_home_educated":
            child = children[child_id]
            counts[("ehe_on_census_day", "", "", "")] += 1
            assert child.date_of_birth is not None
            counts[
                ("ehe_by_sex_and_year_group", child.sex or "U", _nc_year(child.date_of_birth, census), "")
            ] += 1
            stated = [r.codes["ehe_reason"] for r in rows
                      if _utc(r.occurred_at) < end and r.codes and "ehe_reason" in r.codes]  # fmt: skip
            counts[("ehe_by_primary_reason", "", "", stated[-1] if stated else "unknown")] += 1
        during = _state_before(rows, year_start) == "electively_home_educated" or any(
            r.to_state == "electively_home_educated" and year_start <= _utc(r.occurred_at) < year_end
            for r in rows
        )
        if during:
            counts[("ehe_at_any_point_in_previous_academic_year", "", "", "")] += 1
    return counts


@pytest.mark.parametrize("census", CENSUS_DAYS)
def test_ehe_half_equals_an_independent_count_over_the_store(
    synthetic_store: tuple[Engine, str], census: date
) -> None:
    engine, la = synthetic_store
    rows = reports.ehe_return(histories(engine, la), census)
    got = {(r[0], r[1], r[2], r[4]): int(r[5]) for r in rows if int(r[5])}
    expected = {k: n for k, n in independent_counts(engine, la, census).items() if n}
    assert got == expected
    assert got[("ehe_on_census_day", "", "", "")] > 10  # the scenario is not empty
    listed = [r[4] for r in rows if r[0] == "ehe_by_primary_reason"]
    assert listed[: len(EHEReason)] == [r.value for r in EHEReason]  # every category, 0 included


def test_the_termly_return_has_both_halves(synthetic_store: tuple[Engine, str]) -> None:
    engine, la = synthetic_store
    hs = histories(engine, la)
    rows = reports.termly_return(hs, CENSUS_DAYS[-1])
    measures = {r[0] for r in rows}
    assert {"ehe_on_census_day", "cme_on_census_day", "cme_by_primary_reason"} <= measures
    assert rows == reports.ehe_return(hs, CENSUS_DAYS[-1]) + reports.dfe_return(hs, CENSUS_DAYS[-1])
    # Found unsuitable: no longer home educated, counted as CME with reason home_education_unsuitable.
    cme = {r[4]: int(r[5]) for r in rows if r[0] == "cme_by_primary_reason"}
    assert cme["home_education_unsuitable"] > 0
