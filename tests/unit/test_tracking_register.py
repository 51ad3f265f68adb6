"""The register of children not in school (s.436B-436G): entries folded from the child's facts in event time,
projected into tracking_register_entries / _history by tracking's own fold and projection (no Kafka)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from services.tracking.models import (
    TrackingCase,
    TrackingReadAudit,
    TrackingRegisterEntry,
    TrackingRegisterHistory,
)
from services.tracking.stream.app import MIGRATIONS
from shared.auth import Role, issue_token
from shared.db import make_engine, migrate
from tests.unit.test_web_reports import LA, OTHER_LA, SIGNING, CaseStore, tracking_app

PARENT = {"name": "Sam Example", "home_address": "1 Example Street, Bristol", "provides_education": True}
TUTOR = {"name": "Example Tuition Ltd", "provider_type": "tuition_centre", "hours_per_week": 4}


@pytest.fixture
def store(tmp_path: Path) -> CaseStore:
    url = f"sqlite:///{tmp_path / 'tracking.db'}"
    migrate(url, MIGRATIONS, "tracking")
    return CaseStore(make_engine(url))


def entry(store: CaseStore, serial: int) -> TrackingRegisterEntry | None:
    with Session(store.engine) as session:
        return session.get(TrackingRegisterEntry, store.child_ids[serial])


def history(store: CaseStore, serial: int) -> list[TrackingRegisterHistory]:
    with Session(store.engine) as session:
        rows = session.exec(
            select(TrackingRegisterHistory).where(TrackingRegisterHistory.child_id == store.child_ids[serial])
        ).all()
    return sorted(rows, key=lambda r: r.occurred_at)


def case_state(store: CaseStore, serial: int) -> str | None:
    with Session(store.engine) as session:
        case = session.exec(
            select(TrackingCase).where(TrackingCase.child_id == store.child_ids[serial])
        ).one()
    return case.state


def test_a_parents_notice_creates_an_entry_a_providers_return_updates_it_a_school_removes_it(
    store: CaseStore,
) -> None:
    store.fact(1, "not-in-school-notice", date(2025, 11, 3), parents=[PARENT], providers=[TUTOR])
    e = entry(store, 1)
    assert e is not None and e.on_register and e.category == "elective_home_education"
    assert e.education == "not_yet_assessed" and e.ehe_reason == "philosophical_or_preferential"
    assert case_state(store, 1) == "electively_home_educated"  # the notice is home education for the case
    store.fact(1, "education-provider-return", date(2025, 11, 10), provider={**TUTOR, "hours_per_week": 9})
    e = entry(store, 1)
    assert e is not None and e.on_register and e.changed_at is not None and e.changed_at.day == 10
    rows = history(store, 1)
    assert [r.change for r in rows] == ["added", "updated"]
    assert json.loads(rows[0].details or "{}")["parents"][0]["name"] == "Sam Example"
    assert json.loads(rows[1].details or "{}")["provider"]["hours_per_week"] == 9
    store.fact(1, "pupil-registered", date(2025, 12, 1), school_urn="108002")
    e = entry(store, 1)
    assert e is not None and not e.on_register
    assert (e.left_reason, e.left_ref) == ("registered_at_school", "108002")
    assert history(store, 1)[-1].change == "removed"


def test_a_caseworkers_entry_with_education_unknown_is_a_case(store: CaseStore) -> None:
    store.fact(2, "register-entry-recorded", date(2025, 11, 3), suitability="unknown", review_on=None)
    e = entry(store, 2)
    assert e is not None and e.on_register and e.education == "unknown" and e.category == "missing_education"
    assert case_state(store, 2) == "missing_education"
    # Found unsuitable later: still a case, the entry says so.
    store.fact(2, "register-entry-recorded", date(2025, 11, 20), suitability="unsuitable", review_on=None)
    e = entry(store, 2)
    assert e is not None and e.education == "unsuitable" and case_state(store, 2) == "missing_education"


def test_unsuitable_home_education_keeps_the_entry_and_opens_the_case(store: CaseStore) -> None:
    store.fact(3, "home-education-notified", date(2025, 11, 3))
    store.fact(3, "register-entry-recorded", date(2025, 11, 4), suitability="suitable")
    e = entry(store, 3)
    assert e is not None and e.education == "suitable" and e.review_on is not None
    store.fact(3, "home-education-unsuitable", date(2025, 11, 20))
    e = entry(store, 3)
    assert (
        e is not None and e.on_register and e.category == "missing_education" and e.education == "unsuitable"
    )
    assert case_state(store, 3) == "missing_education"


def test_what_tracking_already_learns_puts_children_on_the_register(store: CaseStore) -> None:
    store.fact(4, "pupil-left-roll", date(2025, 11, 3))  # leaver, no school named
    store.fact(5, "provision-started", date(2025, 11, 3), provision_type="alternative_provision",
               full_time=False, hours_per_week=10, school_urn=None)  # fmt: skip
    store.fact(6, "absence-threshold-crossed", date(2025, 11, 3))  # on a roll: not on the register
    store.fact(7, "moved-out-of-area", date(2025, 11, 3), la=OTHER_LA, new_la_code=OTHER_LA,
               from_la_code=LA)  # fmt: skip
    assert (e4 := entry(store, 4)) is not None and e4.category == "missing_education"
    assert e4.education == "unknown"
    assert (e5 := entry(store, 5)) is not None and e5.category == "part_time_provision"
    assert entry(store, 6) is None
    assert (e7 := entry(store, 7)) is not None and e7.la_code == OTHER_LA and e7.on_register


def test_a_late_notice_is_folded_in_event_time(store: CaseStore) -> None:
    # The registration (1 Dec) arrives before the notice it followed (3 Nov): in event time the child was on
    # the register from 3 Nov to 1 Dec and is off it now, with the URN.
    store.fact(8, "pupil-registered", date(2025, 12, 1), school_urn="108002")
    store.fact(8, "not-in-school-notice", date(2025, 11, 3), parents=[PARENT])
    e = entry(store, 8)
    assert e is not None and not e.on_register and e.left_ref == "108002"
    assert e.since is not None and e.since.day == 3
    assert case_state(store, 8) == "in_education"


def test_registered_but_educated_elsewhere_is_on_the_register_without_a_case(store: CaseStore) -> None:
    store.fact(9, "not-in-school-notice", date(2025, 11, 3), parents=[PARENT], providers=[TUTOR],
               arrangement="registered_educated_elsewhere", school_urn="108002")  # fmt: skip
    e = entry(store, 9)
    assert e is not None and e.on_register and e.category == "registered_educated_elsewhere"
    assert e.school_urn == "108002"
    assert case_state(store, 9) is None


def test_a_redelivered_fact_adds_no_history(store: CaseStore) -> None:
    store.fact(10, "not-in-school-notice", date(2025, 11, 3), parents=[PARENT])
    record = store.records[store.child_ids[10]]
    assert len(history(store, 10)) == 1
    assert record.case.register_status.on


# --- the register API: LA-scoped, audited, searches in a POST body ------------------------------------------


def register_client(store: CaseStore, la: str = LA) -> tuple[TestClient, dict[str, str]]:
    app = tracking_app(store.engine)
    token = issue_token(SIGNING, "caseworker1", Role.CASEWORKER, la)
    return TestClient(app), {"Authorization": f"Bearer {token}"}


def test_register_api_lists_filters_and_reads_an_entry_scoped_and_audited(store: CaseStore) -> None:
    store.fact(11, "not-in-school-notice", date(2025, 11, 3), parents=[PARENT], providers=[TUTOR])
    store.fact(12, "pupil-left-roll", date(2025, 11, 4))
    store.fact(13, "not-in-school-notice", date(2025, 11, 5), parents=[PARENT])
    store.fact(13, "pupil-registered", date(2025, 11, 20), school_urn="108002")
    store.fact(14, "not-in-school-notice", date(2025, 11, 3), la=OTHER_LA, parents=[PARENT])
    client, auth = register_client(store)
    with client:
        page = client.post("/v1/register/query", json={"reason": "weekly review"}, headers=auth).json()
        assert page["total"] == 2
        assert [i["child_id"] for i in page["items"]] == [store.child_ids[11], store.child_ids[12]]
        ehe = client.post(
            "/v1/register/query",
            json={"reason": "EHE visits", "categories": ["elective_home_education"]},
            headers=auth,
        ).json()
        assert [i["child_id"] for i in ehe["items"]] == [store.child_ids[11]]
        unknown = client.post(
            "/v1/register/query", json={"reason": "review", "education": ["unknown"]}, headers=auth
        ).json()
        assert [i["child_id"] for i in unknown["items"]] == [store.child_ids[12]]
        left = client.post(
            "/v1/register/query", json={"reason": "left", "on_register": False}, headers=auth
        ).json()
        assert [(i["left_reason"], i["left_ref"]) for i in left["items"]] == [
            ("registered_at_school", "108002")
        ]
        detail = client.get(f"/v1/register/{store.child_ids[11]}", params={"reason": "visit"}, headers=auth)
        assert detail.status_code == 200
        d = detail.json()
        assert d["home_address"] == "1 Example Street, Bristol" and d["parents"][0]["name"] == "Sam Example"
        assert [p["name"] for p in d["providers"]] == ["Example Tuition Ltd"] and d["sources"] == ["SIMS"]
        assert [h["change"] for h in d["history"]] == ["added"]
        # Another LA's entry: 404, and never in this LA's lists.
        other = client.get(f"/v1/register/{store.child_ids[14]}", params={"reason": "x" * 3}, headers=auth)
        assert other.status_code == 404
        assert client.post("/v1/register/query", json={"reason": "bad", "categories": ["x"]}, headers=auth
                           ).status_code == 422  # fmt: skip
    with Session(store.engine) as session:
        audits = session.exec(select(TrackingReadAudit).order_by(col(TrackingReadAudit.id))).all()
    actions = [(a.action, a.child_id) for a in audits]
    assert ("register_read", store.child_ids[11]) in actions
    assert sum(1 for a, _ in actions if a == "register_list") == 4
    assert all(a.la_code == LA for a in audits)
