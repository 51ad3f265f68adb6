"""A person links two records of one child, then undoes it: real services, broker, PostgreSQL and SMTP.

A school reports a child who left the roll and cannot be found (a caseworker alert). The LA team then refers a
child with the same forename and date of birth, a surname spelt differently and no UPN: identity resolution
cannot be sure, so it opens a second child and a possible-duplicate review item. The caseworker links them
(the decision API publishes child-merged; the worker moves the facts to one child and re-folds its case;
escalation stops the merged child's clocks), then finds they were two children after all and undoes the link
(child-split; each case is restored to what its own facts say, and the missing child's clock runs again).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from devtools.samples import child, sample_event_dict
from services.tracking.identity import _person, child_id_for
from services.tracking.matching import Decision, decide, score
from shared.auth import Role, issue_token
from shared.db import make_engine
from shared.settings import Settings
from tests.support.kafka import wait_until
from tests.support.pipeline import CASEWORKER, LA, SIGNING_KEY, Pipeline, running_pipeline, set_clock

pytestmark = pytest.mark.e2e


@pytest.fixture
def pipeline(kafka_settings: Settings, postgres_url: str, tmp_path: Path) -> Iterator[Pipeline]:
    with running_pipeline(kafka_settings, postgres_url, tmp_path) as running:
        yield running


def _rows(pipeline: Pipeline, sql: str, **params: Any) -> list[dict[str, Any]]:
    engine = make_engine(pipeline.database_url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(sql), params)]
    finally:
        engine.dispose()


def _case(pipeline: Pipeline, child_id: str) -> dict[str, Any]:
    [row] = _rows(pipeline, "SELECT * FROM tracking_cases WHERE child_id = :c", c=child_id)
    return row


def _open_escalations(pipeline: Pipeline, child_id: str) -> list[str]:
    rows = _rows(
        pipeline,
        "SELECT rule_id FROM escalation_escalations WHERE child_id = :c AND status = 'open'",
        c=child_id,
    )
    return sorted(r["rule_id"] for r in rows)


def test_link_then_undo_restores_both_children(pipeline: Pipeline) -> None:
    school_kid = child(41, forename="Dana", surname="Bellweather", date_of_birth="2012-02-02")
    referred_kid = {**school_kid, "surname": "Belweather"}
    del referred_kid["upn"], referred_kid["postcode"]
    assert decide(score(_person(referred_kid), _person(school_kid))) == Decision.REVIEW  # the premise

    # A new child's id derives from the event that first named it, and the link keeps the smaller id. Choose
    # the ids so that the missing child is the one merged away: the path where its clocks stop and restart.
    referral = sample_event_dict("referral-received", kid=referred_kid, on=date(2025, 11, 4), school_urn=None)
    left = sample_event_dict("pupil-left-roll", kid=school_kid, on=date(2025, 11, 3))
    unknown = sample_event_dict("whereabouts-unknown", kid=school_kid, on=date(2025, 11, 4), school_urn=None)
    # Either of the school child's two facts could be the one that names it first.
    for fact in (left, unknown):
        while child_id_for(fact["event_id"]) < child_id_for(referral["event_id"]):
            fact["event_id"] = str(uuid.uuid4())
    with (
        pipeline.referral_client(pipeline.school_key) as school,
        pipeline.referral_client(pipeline.team_key) as team,
    ):
        pipeline.submit_with_retry(school, left)
        pipeline.submit_with_retry(team, unknown)

    # The missing child's case and its caseworker alert.
    wait_until(lambda: pipeline.smtp.box.to(CASEWORKER), timeout_s=60, what="the caseworker's alert")

    def resolved_child(event_id: str) -> str | None:
        rows = _rows(pipeline, "SELECT child_id FROM tracking_resolutions WHERE event_id = :e", e=event_id)
        return rows[0]["child_id"] if rows else None

    missing = wait_until(lambda: resolved_child(left["event_id"]), timeout_s=60, what="the school's child")
    wait_until(
        lambda: _open_escalations(pipeline, missing), timeout_s=60, what="the missing child's escalation"
    )

    with pipeline.referral_client(pipeline.team_key) as team:
        pipeline.submit_with_retry(team, referral)
    referred = wait_until(
        lambda: resolved_child(referral["event_id"]), timeout_s=60, what="the referred child"
    )
    assert referred != missing
    wait_until(
        lambda: _rows(pipeline, "SELECT 1 FROM tracking_cases WHERE child_id = :c", c=referred),
        timeout_s=60,
        what="the referred child's case",
    )
    before = {c: _case(pipeline, c) for c in (missing, referred)}
    assert before[missing]["state"] == "whereabouts_unknown" and before[missing]["facts_applied"] == 2
    assert before[referred]["state"] == "missing_education" and before[referred]["facts_applied"] == 1

    caseworker = issue_token(Settings(signing_key=SIGNING_KEY), "cw-1", Role.CASEWORKER, LA)
    tracking = httpx.Client(
        base_url=pipeline.url("tracking"), headers={"Authorization": f"Bearer {caseworker}"}, timeout=10
    )
    items = tracking.get("/v1/review-items").json()
    [item] = [i for i in items if i["kind"] == "possible_duplicate"]
    assert {item["child_id"], item["other_child_id"]} == {missing, referred}

    # Link: one child carries all three facts; the other points at it and its clocks stop.
    linked = tracking.post(
        f"/v1/review-items/{item['review_id']}/decision", json={"decision": "link", "reason": "same child"}
    )
    assert linked.status_code == 200, linked.text
    survivor, gone = sorted((missing, referred))
    assert gone == missing

    def merged() -> bool:
        s, g = _case(pipeline, survivor), _case(pipeline, gone)
        return s["facts_applied"] == 3 and g["merged_into"] == survivor

    wait_until(merged, timeout_s=60, what="the merge applied by the worker")
    assert _case(pipeline, survivor)["state"] == "whereabouts_unknown"  # the fold of all three facts
    wait_until(
        lambda: not _open_escalations(pipeline, gone), timeout_s=60, what="the merged child's clocks stopped"
    )

    # Undo: each child has its own facts and state again, and the missing child's escalation runs again.
    undone = tracking.post(
        f"/v1/review-items/{item['review_id']}/undo", json={"reason": "two different children"}
    )
    assert undone.status_code == 200, undone.text
    assert undone.json()["moved_facts"] == before[gone]["facts_applied"]

    def restored() -> bool:
        now = {c: _case(pipeline, c) for c in (missing, referred)}
        return all(
            now[c]["merged_into"] is None
            and now[c]["state"] == before[c]["state"]
            and now[c]["facts_applied"] == before[c]["facts_applied"]
            for c in now
        )

    wait_until(restored, timeout_s=60, what="both cases restored by the split")
    assert _case(pipeline, missing)["case_id"] == before[missing]["case_id"]
    # The restored case's clocks start afresh at the undo (the merge stopped them; meanwhile its facts were
    # handled under the surviving case): move the escalation's simulated clock past the undo.
    set_clock(pipeline.clock, (datetime.now(UTC) + timedelta(minutes=5)).isoformat())
    wait_until(
        lambda: _open_escalations(pipeline, missing), timeout_s=60, what="the missing child's clock again"
    )
    assert "whereabouts_unknown" in _open_escalations(pipeline, missing)
    assert "whereabouts_unknown" not in _open_escalations(pipeline, referred)  # back to its own state
    verdicts = {
        r["verdict"]
        for r in _rows(pipeline, "SELECT verdict FROM tracking_timeline WHERE child_id = :c", c=survivor)
    }
    assert {"merged", "split"} <= verdicts  # the timeline keeps the link and its undoing

    # The referred child's next fact resolves to it again, not to the child it was linked to.
    located = sample_event_dict("child-located", kid=referred_kid, on=date(2025, 11, 6), school_urn=None)
    with pipeline.referral_client(pipeline.team_key) as team:
        pipeline.submit_with_retry(team, located)
    assert (
        wait_until(lambda: resolved_child(located["event_id"]), timeout_s=60, what="the new fact") == referred
    )
