"""The web's report figures against a case store built from known facts (tracking's own fold and projection,
no Kafka): the snapshot, the list of children not in full-time education, the DfE return, trends, CSV."""

from __future__ import annotations

import csv
import io
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from devtools.samples import child, sample_event_dict
from services.tracking import api as tracking_api
from services.tracking import register_api
from services.tracking.cases import ChildRecord, apply_child_fact, new_record
from services.tracking.crossla import CrossLAMatcher
from services.tracking.identity import IdentityResolver
from services.tracking.models import TrackingCase, TrackingReadAudit
from services.tracking.projection import project
from services.tracking.stream.app import MIGRATIONS
from services.web import reports
from shared.auth import Role, issue_token
from shared.db import make_engine, migrate
from shared.events.catalogue import decode_inbound
from shared.events.envelope import Source
from shared.events.internal import ChildFact, ChildFactPayload
from shared.events.vocab import MissingReason
from shared.school_calendar import CalendarRegistry
from shared.settings import Settings

LA, OTHER_LA = "801", "803"
SIGNING = Settings(signing_key="web-report-tests-signing-key-0123456789")  # type: ignore[arg-type]


@dataclass
class CaseStore:
    """tracking_* tables filled the way the tracking worker fills them: resolve, fold, project."""

    engine: Engine
    records: dict[str, ChildRecord] = field(default_factory=dict)
    kids: dict[int, dict[str, Any]] = field(default_factory=dict)
    child_ids: dict[int, str] = field(default_factory=dict)

    def fact(self, serial: int, event_type: str, on: date, la: str = LA, **payload: Any) -> None:
        kid = self.kids.setdefault(serial, child(serial, la))
        data = sample_event_dict(event_type, kid=kid, on=on, la_code=la)
        data["payload"].update(payload)
        inbound = decode_inbound(data)
        resolution = IdentityResolver(self.engine).resolve(inbound)
        self.child_ids[serial] = resolution.child_id
        event = ChildFact(
            event_id=inbound.event_id,
            occurred_at=inbound.occurred_at,
            source=Source(system="test", la_code=la),
            payload=ChildFactPayload(
                child_id=uuid.UUID(resolution.child_id), la_code=la, match=resolution.match,
                fact=inbound.model_dump(mode="json"),
            ),
        )  # fmt: skip
        record = self.records.get(resolution.child_id) or new_record(resolution.child_id, la)
        outcome = apply_child_fact(record, event)
        project(self.engine, outcome)
        self.records[resolution.child_id] = outcome.record


def build_scenario(engine: Engine) -> CaseStore:
    """Known facts (school days counted with the default calendar):

    1: left roll 3 Nov 2025 (unknown destination), whereabouts unknown 10 Nov      -> whereabouts_unknown
    2: permanently excluded 5 Nov                                                  -> awaiting_provision
    3: left roll 3 Nov, part-time alternative provision (10 h) from 12 Nov         -> part_time_provision
    4: left roll 2 Jun 2025, located in education 10 Sep                            -> in_education
    5: home education notified 4 Nov                                               -> electively_home_educated
    6: boy born 2012, EHCP, referred 1 Aug 2025 (no case before)                   -> missing_education
    7: located in education 15 Nov, then (late) left roll 3 Nov                    -> in_education now,
       missing_education between 3 and 15 Nov in event time
    8: another LA's child (803), left roll 3 Nov                                    -> not in 801's figures
    """
    store = CaseStore(engine)
    store.kids[6] = child(6, LA, sex="M", date_of_birth="2012-05-05", vulnerabilities=["ehcp"])
    store.fact(1, "pupil-left-roll", date(2025, 11, 3))
    store.fact(1, "whereabouts-unknown", date(2025, 11, 10))
    store.fact(2, "exclusion-issued", date(2025, 11, 5))
    store.fact(3, "pupil-left-roll", date(2025, 11, 3))
    store.fact(
        3, "provision-started", date(2025, 11, 12),
        provision_type="alternative_provision", hours_per_week=10, full_time=False, school_urn=None,
    )  # fmt: skip
    store.fact(4, "pupil-left-roll", date(2025, 6, 2))
    store.fact(4, "child-located", date(2025, 9, 10), in_education=True, school_urn="108002")
    store.fact(5, "home-education-notified", date(2025, 11, 4))
    store.fact(6, "referral-received", date(2025, 8, 1))
    store.fact(7, "child-located", date(2025, 11, 15), in_education=True, school_urn="108002")
    store.fact(7, "pupil-left-roll", date(2025, 11, 3))
    store.fact(8, "pupil-left-roll", date(2025, 11, 3), la=OTHER_LA)
    return store


@pytest.fixture
def case_store(tmp_path: Path) -> CaseStore:
    url = f"sqlite:///{tmp_path / 'tracking.db'}"
    migrate(url, MIGRATIONS, "tracking")
    return build_scenario(make_engine(url))


def tracking_app(engine: Engine, published: list[object] | None = None) -> FastAPI:
    """Tracking's read API in-process; review decisions' events land in ``published`` (refused if None)."""

    def publish(session: object, event: object) -> None:
        if published is None:
            raise AssertionError("no review decisions in these tests")
        published.append(event)

    app = FastAPI()
    app.state.engine = engine
    app.state.matcher = CrossLAMatcher()
    app.state.publish = publish
    from shared.settings import get_settings

    app.dependency_overrides[get_settings] = lambda: SIGNING
    app.include_router(tracking_api.router)
    app.include_router(register_api.router)
    return app


def histories(engine: Engine, la: str = LA) -> list[reports.CaseHistory]:
    token = issue_token(SIGNING, "manager1", Role.MANAGER, la)
    with TestClient(tracking_app(engine)) as client:
        response = client.get(
            "/v1/reports/history",
            params={"reason": "test report"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 200, response.text
    return [reports.CaseHistory.model_validate(h) for h in response.json()]


CALENDAR = CalendarRegistry().default


def test_snapshot_after_all_facts_equals_the_case_store_counts(case_store: CaseStore) -> None:
    snap = reports.snapshot(histories(case_store.engine), date(2025, 12, 1), CALENDAR, None)
    with Session(case_store.engine) as session:
        rows = session.exec(
            select(TrackingCase.state, func.count())
            .where(TrackingCase.la_code == LA, col(TrackingCase.merged_into).is_(None))
            .group_by(col(TrackingCase.state))
        ).all()
    assert snap.by_state == {state: n for state, n in rows if state}
    assert snap.cme_total == sum(n for state, n in rows if state in reports.CME_STATES)


def test_snapshot_as_of_a_past_date_follows_event_time(case_store: CaseStore) -> None:
    hs = histories(case_store.engine)
    # 12 Nov: 1 whereabouts unknown, 2 awaiting provision, 3 in (part-time) education from 12 Nov, 4 in
    # education, 5 home educated, 6 missing, 7 missing in event time (left 3 Nov, located only on 15 Nov).
    snap = reports.snapshot(hs, date(2025, 11, 12), CALENDAR, None)
    assert snap.by_state == {
        "whereabouts_unknown": 1, "awaiting_provision": 1, "missing_education": 2,
        "part_time_provision": 1, "in_education": 1, "electively_home_educated": 1,
    }  # fmt: skip
    assert snap.cme_total == 4 and snap.whereabouts_unknown == 1 and snap.awaiting_provision == 1
    assert {r: n for r, n in snap.by_reason.items() if n} == {
        "not_recorded": 2, "whereabouts_unknown": 1, "excluded": 1,
    }  # fmt: skip
    assert list(snap.by_reason)[:3] == ["not_recorded", "whereabouts_unknown", "excluded"]  # largest first
    assert set(snap.by_reason) == set(reports.REASONS)  # every category, 0 included
    # School days missing by 12 Nov: child 1 and 7 since 3 Nov (7 school days), child 2 since 5 Nov (5),
    # child 6 since 1 Aug (summer holiday, then the autumn term): counted by the calendar.
    expected_days = sorted([7, 7, 5, CALENDAR.school_days_between(date(2025, 8, 1), date(2025, 11, 12))])
    assert snap.school_days_missing["0-10"] == 3
    assert snap.median_school_days_missing == (expected_days[1] + expected_days[2]) / 2
    # 1 July: only child 4 (left 2 June) is missing; nobody else had a case yet.
    july = reports.snapshot(hs, date(2025, 7, 1), CALENDAR, None)
    assert july.by_state == {"missing_education": 1} and july.cme_total == 1


def test_vulnerable_groups_against_the_population(case_store: CaseStore) -> None:
    population = reports.Population(total=1000, groups={"ehcp": 40, "sen_support": 120})
    snap = reports.snapshot(histories(case_store.engine), date(2025, 11, 20), CALENDAR, population)
    by_group = {v["group"]: v for v in snap.vulnerable}
    assert by_group["ehcp"]["cme"] == 1 and by_group["ehcp"]["cme_per_1000"] == 25.0
    assert by_group["sen_support"]["cme"] == 0 and by_group["ehcp"]["share_of_population_pct"] == 4.0
    assert reports.cme_rate_per_1000(snap) == 1000 * snap.cme_total / 1000


def test_not_in_full_time_education_list(case_store: CaseStore) -> None:
    rows = reports.not_in_full_time_education(histories(case_store.engine), date(2025, 11, 20))
    ids = case_store.child_ids
    by_child = {r[0]: r for r in rows}
    assert set(by_child) == {ids[1], ids[2], ids[3], ids[6]}
    assert by_child[ids[3]][3:] == ("alternative_provision", "10.0", "", "2025-11-12")
    assert by_child[ids[2]][5] == "permanent"
    assert by_child[ids[1]][2] == case_store.kids[1]["upn"]
    assert by_child[ids[6]][1] == "2012-05-05"


def test_dfe_return_for_a_census_day(case_store: CaseStore) -> None:
    rows = reports.dfe_return(histories(case_store.engine), date(2025, 11, 20))
    table = {(r[0], r[1], r[2], r[3], r[4]): int(r[5]) for r in rows}
    assert table[("cme_on_census_day", "", "", "", "")] == 3  # children 1, 2 and 6
    assert table[("cme_by_sex_and_year_group", "F", "Y7", "", "")] == 2
    assert table[("cme_by_sex_and_year_group", "M", "Y9", "", "")] == 1
    assert table[("cme_by_time_missing", "", "", "12_weeks_or_less", "")] == 2
    assert table[("cme_by_time_missing", "", "", "over_12_weeks", "")] == 1
    assert table[("cme_by_primary_reason", "", "", "", "whereabouts_unknown")] == 1
    # At any point in the year to census day: 1, 2, 3, 4 (June), 6 and 7 (3-15 Nov); not 5 (home educated).
    assert table[("cme_at_any_point_in_previous_year", "", "", "", "")] == 6


def test_every_reason_category_a_sender_states_reaches_the_return_and_the_snapshot(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'reasons.db'}"
    migrate(url, MIGRATIONS, "tracking")
    store = CaseStore(make_engine(url))
    serials = {reason: n for n, reason in enumerate(MissingReason, start=20)}
    for reason, n in serials.items():  # one referral per category, stating it
        store.fact(n, "referral-received", date(2025, 11, 3), reason=reason.value)
    # An enquiry on 10 Nov finds the "other" child is out of school for health reasons.
    store.fact(
        serials[MissingReason.OTHER], "enquiry-recorded", date(2025, 11, 10),
        enquiry_type="health", outcome="information_received", reason="health",
    )  # fmt: skip
    hs = histories(store.engine)

    def by_reason(census: date) -> dict[str, int]:
        rows = reports.dfe_return(hs, census)
        return {r[4]: int(r[5]) for r in rows if r[0] == "cme_by_primary_reason"}

    before = by_reason(date(2025, 11, 5))
    assert list(before) == list(reports.REASONS)  # every category, in the vocabulary's order
    assert set(before.values()) == {1}
    after = by_reason(date(2025, 11, 20))
    assert after["health"] == 2 and after["other"] == 0
    assert sum(after.values()) == len(MissingReason)
    snap = reports.snapshot(hs, date(2025, 11, 20), CALENDAR, None)
    assert snap.by_reason == {**{r: after[r] for r in snap.by_reason}} and snap.by_reason["health"] == 2
    assert set(snap.by_reason) == set(reports.REASONS)


def test_trends_by_month(case_store: CaseStore) -> None:
    points = reports.trends(histories(case_store.engine), date(2025, 11, 30), months=6)
    assert [p.on for p in points][-2:] == [date(2025, 10, 31), date(2025, 11, 30)]
    by_month = {p.on.month: p for p in points}
    assert by_month[6].cme == 1 and by_month[6].new_cme == 1  # child 4 from 2 June
    assert by_month[8].cme == 2 and by_month[8].new_cme == 1  # child 4 (to 10 Sep) and child 6 (from 1 Aug)
    assert by_month[9].cme == 1 and by_month[9].new_cme == 0
    assert by_month[11].cme == 3 and by_month[11].whereabouts_unknown == 1


def test_reports_read_only_the_callers_la_and_are_audited(case_store: CaseStore) -> None:
    other = histories(case_store.engine, OTHER_LA)
    assert [h.child_id for h in other] == [case_store.child_ids[8]]
    with Session(case_store.engine) as session:
        audits = session.exec(
            select(TrackingReadAudit).where(TrackingReadAudit.action == "report_history")
        ).all()
    assert {a.la_code for a in audits} == {OTHER_LA}


def test_csv_has_the_header_and_neutralises_formulas() -> None:
    text = reports.to_csv(reports.NOT_IN_FTE_HEADER, [("id", "2014-01-01", "=HYPERLINK()", "", "", "", "")])
    parsed = list(csv.reader(io.StringIO(text)))
    assert parsed[0] == list(reports.NOT_IN_FTE_HEADER)
    assert parsed[1][2] == "'=HYPERLINK()"
    assert Counter(len(r) for r in parsed) == Counter({7: 2})


def test_year_groups() -> None:
    assert reports.year_group(date(2014, 3, 1), date(2025, 11, 20)) == "Y7"
    assert reports.year_group(date(2014, 9, 1), date(2025, 11, 20)) == "Y6"
    assert reports.year_group(date(2021, 5, 1), date(2025, 11, 20)) == "R"
    assert reports.year_group(None, date(2025, 11, 20)) == "unknown"
