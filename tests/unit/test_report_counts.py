"""The reports from tracking's counts of stored spells (``tracking_spells``, counted in SQL) against the same
reports replayed from every case's whole history (the web's reference functions over
``/v1/reports/history``): on the known scenario and on a synthetic LA whose facts arrive partly late, for
many days, so a change to either path cannot silently make them diverge. Also: the spells an upgrade
backfills equal the ones projection writes."""

from __future__ import annotations

import random
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.engine import Engine

from devtools.synthetic import generate
from services.tracking import spells
from services.tracking.cases import apply_child_fact, new_record
from services.tracking.identity import IdentityResolver
from services.tracking.projection import project
from services.tracking.stream.app import MIGRATIONS, migrate_store
from services.web import reports
from shared.auth import Role, issue_token
from shared.db import alembic_config, make_engine, migrate
from shared.events.catalogue import decode_inbound
from shared.events.envelope import Source
from shared.events.internal import ChildFact, ChildFactPayload
from shared.school_calendar import CalendarRegistry
from tests.unit.test_web_reports import LA, SIGNING, build_scenario, histories, tracking_app

CALENDAR = CalendarRegistry().default
POPULATION = reports.Population(total=5000, groups={"ehcp": 40, "sen_support": 120, "child_in_need": 30})


class Tracking:
    """Tracking's report endpoints in-process, as one LA's manager."""

    def __init__(self, engine: Engine, la: str) -> None:
        self.client = TestClient(tracking_app(engine))
        token = issue_token(SIGNING, "manager1", Role.MANAGER, la)
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params={"reason": "test report", **params}, headers=self.headers)
        assert response.status_code == 200, response.text
        return response.json()

    def counts(self, on: date) -> reports.ReportCounts:
        return reports.ReportCounts.model_validate(self.get("/v1/reports/counts", on=on.isoformat()))

    def returns(self, on: date) -> reports.ReturnCounts:
        first, last = reports.academic_year_before(on)
        data = self.get("/v1/reports/return", on=on.isoformat(), ehe_from=first, ehe_to=last)
        return reports.ReturnCounts.model_validate(data)

    def not_in_fte(self, on: date, limit: int) -> list[reports.FTEChild]:
        out: list[reports.FTEChild] = []
        params: dict[str, Any] = {"on": on.isoformat(), "limit": limit}
        while True:
            page = reports.NotInFTEPage.model_validate(
                self.get("/v1/reports/not-in-full-time-education", **params)
            )
            out += page.rows
            if not page.next_after:
                return out
            params["after"] = page.next_after


def assert_same_reports(engine: Engine, la: str, days: list[date], page: int) -> None:
    whole = histories(engine, la)
    with Tracking(engine, la).client:
        tracking = Tracking(engine, la)
        for day in days:
            counts = tracking.counts(day)
            assert reports.snapshot_from(counts, CALENDAR, POPULATION) == reports.snapshot(
                whole, day, CALENDAR, POPULATION
            ), day
            assert reports.trends_from(counts) == reports.trends(whole, day), day
            returned = tracking.returns(day)
            assert reports.dfe_return_from(returned) == reports.dfe_return(whole, day), day
            assert reports.ehe_return_from(returned) == reports.ehe_return(whole, day), day
            assert reports.not_in_fte_from(tracking.not_in_fte(day, page), day) == (
                reports.not_in_full_time_education(whole, day)
            ), day


def test_the_scenario_counts_equal_the_replay(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tracking.db'}"
    migrate(url, MIGRATIONS, "tracking")
    engine = make_engine(url)
    build_scenario(engine)
    days = [date(2025, 7, 1), date(2025, 11, 3), date(2025, 11, 12), date(2025, 11, 15), date(2025, 11, 20)]
    assert_same_reports(engine, LA, [*days, date(2026, 1, 15), date(2026, 9, 30)], page=2)


def synthetic_store(engine: Engine, pupils: int, seed: int) -> str:
    """One synthetic LA's facts through identity resolution, the case fold and projection, one by one as the
    worker does, with some facts late (shuffled within windows of 8: a late fact re-folds its case)."""
    population = generate(las=1, pupils_per_la=pupils, seed=seed)
    events = list(population.events)
    rng = random.Random(seed)
    for start in range(0, len(events), 8):
        window = events[start : start + 8]
        rng.shuffle(window)
        events[start : start + 8] = window
    records: dict[str, Any] = {}
    resolver = IdentityResolver(engine)
    la = population.la_codes[0]
    for data in events:
        inbound = decode_inbound(data)
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
        if not outcome.duplicate:
            project(engine, outcome)
        records[resolution.child_id] = outcome.record
    return la


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Engine, str, str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('synthetic') / 'tracking.db'}"
    migrate(url, MIGRATIONS, "tracking")
    engine = make_engine(url)
    return engine, url, synthetic_store(engine, pupils=1500, seed=11)


def test_a_synthetic_las_counts_equal_the_replay_on_every_month_end(
    synthetic: tuple[Engine, str, str],
) -> None:
    engine, _, la = synthetic
    with engine.connect() as conn:
        late = conn.execute(
            text("SELECT count(*) FROM tracking_timeline WHERE verdict LIKE 'late%'")
        ).scalar()
        first, last = conn.execute(
            text("SELECT min(occurred_at), max(occurred_at) FROM tracking_timeline")
        ).one()
    assert late and late > 0, "the shuffled facts should include late ones"
    start, end = date.fromisoformat(str(first)[:10]), date.fromisoformat(str(last)[:10])
    days = [start - timedelta(days=1), start]
    day = start
    while day <= end + timedelta(days=40):
        days.append(day)
        day += timedelta(days=23)  # a spread of days: month ends, mid-months, term days and holidays
    assert_same_reports(engine, la, days, page=50)


def test_an_upgrade_backfills_the_spells_projection_wrote(
    synthetic: tuple[Engine, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, url, _ = synthetic
    query = text("SELECT * FROM tracking_spells ORDER BY child_id, seq")
    with engine.connect() as conn:
        written = conn.execute(query).all()
    assert len(written) > 100
    config = alembic_config(url, MIGRATIONS, "tracking")
    command.downgrade(config, "0009_timeline_codes")
    command.upgrade(config, "head")
    with engine.connect() as conn:  # the migrations alone run none of the service's code
        assert conn.execute(query).all() == []
    migrate_store(url)  # what every start of the service runs
    with engine.connect() as conn:
        assert conn.execute(query).all() == written
    assert spells.ensure_current(url) is None  # current: the next start leaves them alone
    # A changed replay (its version raised) rebuilds them once, at the next start.
    monkeypatch.setattr(spells, "SPELLS_VERSION", spells.SPELLS_VERSION + 1)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM tracking_spells"))
    with engine.connect() as conn:
        cases = conn.execute(text("SELECT count(*) FROM tracking_cases")).scalar()
    assert spells.ensure_current(url) == cases
    with engine.connect() as conn:
        assert conn.execute(query).all() == written
    assert spells.ensure_current(url) is None


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/v1/reports/counts", {}),
        ("/v1/reports/return", {"ehe_from": "2024-09-01", "ehe_to": "2025-08-31"}),
        ("/v1/reports/not-in-full-time-education", {}),
    ],
)
def test_a_day_no_case_can_hold_is_a_422_not_a_500(tmp_path: Path, path: str, extra: dict[str, str]) -> None:
    # Found by schemathesis: on=0001-01-01 less twelve month-ends overflowed the date type (a 500).
    url = f"sqlite:///{tmp_path / 'tracking.db'}"
    migrate(url, MIGRATIONS, "tracking")
    tracking = Tracking(make_engine(url), LA)
    for day in ("0001-01-01", "1989-12-31", "2200-01-01"):
        params = {"reason": "test report", "on": day, **extra}
        response = tracking.client.get(path, params=params, headers=tracking.headers)
        assert response.status_code == 422, (day, response.status_code, response.text)
        assert "1990-01-01" in response.text
    params = {"reason": "test report", "on": "1990-01-01", **extra}
    assert tracking.client.get(path, params=params, headers=tracking.headers).status_code == 200
