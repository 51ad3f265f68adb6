"""Found anywhere (issue 18), on the real broker, PostgreSQL and services as processes.

A child's whereabouts are unknown in LA 801 from Mon 3 Nov 2025; on Mon 1 Dec 2025 a school in LA 803
registers a child with the same UPN. Identity stays per LA (803 gets its own child), but in the same
processing cycle both LAs get a cross-LA review item: 801 "possible location: LA 803", 803 "sought by LA
801". 801's caseworker confirms; 801's case closes with outcome other_la_accepted naming 803; 803's record
shows the confirmed link. Neither LA can read the other's child, case or timeline, or decide the other's
item. Then a GP referral in 803 with no UPN names another child missing in 801 by name, date of birth and
sex: a scored match in the review queues of 801 and 803 and no other LA's; 803 rejects it and both keep
their own records. Every disclosure is in both LAs' audit with its legal basis; no log or metric names a
child.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.samples import child, sample_event_dict
from services.tracking.crossla import LEGAL_BASIS
from shared.auth import Role, issue_token
from shared.settings import Settings
from tests.support.kafka import wait_until
from tests.support.pipeline import LA, SIGNING_KEY, Pipeline, running_pipeline
from tests.support.store import case as _case
from tests.support.store import resolved as _resolved
from tests.support.store import rows as _rows

pytestmark = pytest.mark.e2e

OTHER_LA, UNRELATED_LA = "803", "802"
CONTACTS = '{"801": "cme.team@801.test", "803": "cme.team@803.test"}'


@pytest.fixture
def pipeline(kafka_settings: Settings, postgres_url: str, tmp_path: Path) -> Iterator[Pipeline]:
    env = {"CME_TRACKING_LA_CONTACTS": CONTACTS}
    with running_pipeline(kafka_settings, postgres_url, tmp_path, extra_env=env) as running:
        yield running


def _api(pipeline: Pipeline, la: str, sub: str) -> httpx.Client:
    token = issue_token(Settings(signing_key=SIGNING_KEY), sub, Role.CASEWORKER, la)
    return httpx.Client(
        base_url=pipeline.url("tracking"), headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def _cross_items(api: httpx.Client, status: str = "open") -> list[dict[str, Any]]:
    answer = api.get("/v1/review-items", params={"status": status})
    assert answer.status_code == 200, answer.text
    return [i for i in answer.json() if i["kind"] == "cross_la_match"]


def _read(api: httpx.Client, child_id: str) -> httpx.Response:
    return api.get(f"/v1/children/{child_id}", params={"reason": "cross-LA e2e"})


def test_found_in_another_la_both_told_one_confirms_neither_reads_the_other(pipeline: Pipeline) -> None:
    kid = child(61, forename="Peregrine", surname="Quillfeather", date_of_birth="2013-05-14")
    school_803 = pipeline.create_api_key(
        "--kind", "school", "--name", "803 school", "--urn", "140001", la="803"
    )
    gp_803 = pipeline.create_api_key("--kind", "agency", "--name", "803 GP", la="803")
    unknown = sample_event_dict("whereabouts-unknown", kid=kid, on=date(2025, 11, 3), school_urn=None)
    with pipeline.referral_client(pipeline.team_key) as team:
        pipeline.submit_with_retry(team, unknown)
    sought = wait_until(lambda: _resolved(pipeline, unknown["event_id"]), timeout_s=60, what="801's child")
    wait_until(
        lambda: (c := _case(pipeline, sought)) and c["state"] == "whereabouts_unknown",
        timeout_s=60,
        what="801's case whereabouts unknown",
    )

    registered = sample_event_dict(
        "pupil-registered", kid=kid, on=date(2025, 12, 1), la_code=OTHER_LA, school_urn="140001"
    )
    registered["payload"]["school_urn"] = "140001"
    with pipeline.referral_client(school_803) as school:
        pipeline.submit_with_retry(school, registered)
    found = wait_until(lambda: _resolved(pipeline, registered["event_id"]), timeout_s=60, what="803's child")
    assert found != sought  # each LA keeps its own record of the child

    api_801, api_803, api_802 = (
        _api(pipeline, LA, "cw-801"),
        _api(pipeline, OTHER_LA, "cw-803"),
        _api(pipeline, UNRELATED_LA, "cw-802"),
    )
    # One processing cycle: the items are written in the transaction that resolved 803's fact.
    [item_801] = _cross_items(api_801)
    [item_803] = _cross_items(api_803)
    assert item_801["child_id"] == sought and item_803["child_id"] == found
    assert item_801["detail"].startswith("possible location: LA 803 (pupil-registered 2025-12-01)")
    assert item_803["detail"].startswith("sought by LA 801 (whereabouts_unknown since 2025-11-03)")
    assert _cross_items(api_802) == []

    wait_until(lambda: _case(pipeline, found), timeout_s=60, what="803's case")
    mine = _read(api_801, sought).json()["cross_la"]
    assert [
        (x["side"], x["other_la_code"], x["fact_type"], x["fact_on"], x["other_la_contact"]) for x in mine
    ] == [("possible_location", "803", "pupil-registered", "2025-12-01", "cme.team@803.test")]
    theirs = _read(api_803, found).json()["cross_la"]
    assert [(x["side"], x["other_la_code"], x["sought_state"], x["missing_since"]) for x in theirs] == [
        ("sought_by", "801", "whereabouts_unknown", "2025-11-03")
    ]
    assert theirs[0]["fact_type"] is None  # 803 is not told its own fact back, nor anything of 801's case

    # Neither LA reads the other's child, case or timeline, nor decides the other's item.
    case_801, case_803 = _case(pipeline, sought), _case(pipeline, found)
    assert case_801 is not None and case_803 is not None
    for api, child_id, case_id in (
        (api_803, sought, case_801["case_id"]),
        (api_801, found, case_803["case_id"]),
    ):
        assert _read(api, child_id).status_code == 404
        assert api.get(f"/v1/cases/{case_id}", params={"reason": "peek"}).status_code == 404
    refused = api_803.post(
        f"/v1/review-items/{item_801['review_id']}/decision",
        json={"decision": "confirm", "reason": "not mine"},
    )
    assert refused.status_code == 404
    wrong = api_801.post(
        f"/v1/review-items/{item_801['review_id']}/decision",
        json={"decision": "link", "reason": "same child"},
    )
    assert wrong.status_code == 422

    # 801 confirms: its case closes with 803 as destination; 803's stays and shows the link confirmed.
    confirmed = api_801.post(
        f"/v1/review-items/{item_801['review_id']}/decision",
        json={"decision": "confirm", "reason": "803's CME team confirmed the registration by phone"},
    )
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "confirmed", confirmed.text
    closed = wait_until(
        lambda: (c := _case(pipeline, sought)) and c["state"] == "left_area" and c,
        timeout_s=60,
        what="801's case closed",
    )
    assert (closed["outcome"], closed["outcome_ref"]) == ("other_la_accepted", "803")
    assert _case(pipeline, found)["state"] == "in_education"  # type: ignore[index]
    assert _cross_items(api_803) == [] and len(_cross_items(api_803, "confirmed")) == 1
    assert [x["status"] for x in _read(api_803, found).json()["cross_la"]] == ["confirmed"]
    again = api_803.post(
        f"/v1/review-items/{item_803['review_id']}/decision", json={"decision": "reject", "reason": "late"}
    )
    assert again.status_code == 409

    # A scored match: a GP in 803 refers a child with no UPN whom 801 lost (whereabouts unknown, no UPN
    # known): names, date of birth and sex agree, the postcode is new.
    lost = child(62, upn=None, forename="Hesper", surname="Drumlanrig", date_of_birth="2014-09-30")
    left = sample_event_dict("whereabouts-unknown", kid=lost, on=date(2025, 11, 10), school_urn=None)
    with pipeline.referral_client(pipeline.team_key) as team:
        pipeline.submit_with_retry(team, left)
    lost_801 = wait_until(
        lambda: _resolved(pipeline, left["event_id"]), timeout_s=60, what="801's lost child"
    )
    wait_until(lambda: _case(pipeline, lost_801), timeout_s=60, what="801's lost child's case")
    referral = sample_event_dict(
        "referral-received", kid={**lost, "postcode": "NE1 4ST"}, on=date(2025, 12, 2), la_code=OTHER_LA,
        school_urn=None,
    )  # fmt: skip
    with pipeline.referral_client(gp_803) as gp:
        pipeline.submit_with_retry(gp, referral)
    lost_803 = wait_until(lambda: _resolved(pipeline, referral["event_id"]), timeout_s=60, what="803's child")
    [scored_801] = _cross_items(api_801)
    [scored_803] = _cross_items(api_803)
    assert (scored_801["child_id"], scored_803["child_id"]) == (lost_801, lost_803)
    assert scored_801["score"] == scored_803["score"] and 0.75 <= scored_801["score"] < 0.92
    assert "agreed: surname,forename,date_of_birth,sex" in scored_801["detail"]
    assert _cross_items(api_802) == []  # nowhere else
    rejected = api_803.post(
        f"/v1/review-items/{scored_803['review_id']}/decision",
        json={"decision": "reject", "reason": "different child: another birth certificate"},
    )
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    assert _cross_items(api_801) == [] and _case(pipeline, lost_801)["state"] == "whereabouts_unknown"  # type: ignore[index]

    # The reports: one found elsewhere and confirmed, 28 days from missing to found; one rejected.
    report = api_801.get("/v1/reports/cross-la", params={"reason": "termly report"}).json()
    assert report["matching_enabled"] is True
    assert report["found_elsewhere"] == {"open": 0, "confirmed": 1, "rejected": 1}
    assert report["days_missing_to_found"] == [28] and report["median_days_missing_to_found"] == 28
    report_803 = api_803.get("/v1/reports/cross-la", params={"reason": "termly report"}).json()
    assert report_803["sought_by_others"] == {"open": 0, "confirmed": 1, "rejected": 1}

    # Every disclosure in both LAs' audit, with its legal basis; nothing of the children in it.
    audit = _rows(
        pipeline,
        "SELECT la_code, action, reason FROM tracking_read_audit WHERE action LIKE 'cross_la_%' ORDER BY id",
    )
    assert sorted((a["la_code"], a["action"]) for a in audit) == sorted(
        [(la, action) for la in (LA, OTHER_LA) for action in ("cross_la_match", "cross_la_match",
                                                               "cross_la_confirm", "cross_la_reject")]
    )  # fmt: skip
    personal = [kid["upn"], kid["surname"], lost["surname"], kid["forename"], "2013-05-14", "2014-09-30"]
    for row in audit:
        assert LEGAL_BASIS in row["reason"] and not [p for p in personal if p in row["reason"]]
    for name, log in pipeline.logs().items():
        assert not [p for p in personal if p in log], f"{name} logged a child's data"
    metrics = httpx.get(f"{pipeline.url('tracking')}/metrics", timeout=10).text
    assert not [p for p in personal if p in metrics]

    # The other order (a move without a CTF): 803's school registers a child first, then 801 loses the same
    # UPN. 801's fact finds nobody sought when identity resolves it; once the case agent has made 801's case
    # whereabouts unknown, it looks across LAs and both are told.
    mover = child(63, forename="Isolde", surname="Farthingale", date_of_birth="2012-01-20")
    arrived = sample_event_dict(
        "pupil-registered", kid=mover, on=date(2025, 12, 1), la_code=OTHER_LA, school_urn="140001"
    )
    arrived["payload"]["school_urn"] = "140001"
    with pipeline.referral_client(school_803) as school:
        pipeline.submit_with_retry(school, arrived)
    mover_803 = wait_until(lambda: _resolved(pipeline, arrived["event_id"]), timeout_s=60, what="803's mover")
    wait_until(lambda: _case(pipeline, mover_803), timeout_s=60, what="803's mover's case")
    gone = sample_event_dict("whereabouts-unknown", kid=mover, on=date(2025, 12, 8), school_urn=None)
    with pipeline.referral_client(pipeline.team_key) as team:
        pipeline.submit_with_retry(team, gone)
    mover_801 = wait_until(lambda: _resolved(pipeline, gone["event_id"]), timeout_s=60, what="801's mover")
    [late_801] = wait_until(lambda: _cross_items(api_801), timeout_s=60, what="801's item, the other order")
    [late_803] = _cross_items(api_803)
    assert (late_801["child_id"], late_803["child_id"]) == (mover_801, mover_803)
    assert late_801["detail"].startswith("possible location: LA 803 (pupil-registered 2025-12-01)")
    assert late_803["detail"].startswith("sought by LA 801 (whereabouts_unknown since 2025-12-08)")
    assert _cross_items(api_802) == []
