"""Safeguarding routing end to end: a child on a child protection plan (or looked after) whose whereabouts
become unknown reaches children's social care (MASH) at once, from the flag on the event itself.

The services run as processes on the real broker and PostgreSQL with simulated time in escalation. The CME
team reports the whereabouts unknown; nobody sends a social-care-status-changed event. The simulated clock
never moves during the test, so the MASH alert has to come from the same tick as the caseworker's, at the
event's own time; the police step (24 hours later by the default rule) must not have been sent.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from devtools.samples import child, sample_event_dict
from shared.auth import Role, issue_token
from shared.db import make_engine
from shared.settings import Settings
from tests.support.kafka import wait_until
from tests.support.pipeline import LA, SIGNING_KEY, body_of, running_pipeline

pytestmark = pytest.mark.e2e

MASH = "mash@la.test"
CASEWORKER = "caseworker@la.test"
# The team that takes MASH alerts also takes police alerts in the test directory: count by rule instead.
STEPS = """
SELECT e.rule_id, s.level, s.due_at, s.published
FROM escalation_steps s JOIN escalation_escalations e ON e.id = s.escalation_id
WHERE e.child_id = :child ORDER BY s.due_at, e.rule_id, s.level
"""


def test_a_flag_on_the_event_routes_a_missing_child_to_mash_in_the_same_tick(
    kafka_settings: Settings, postgres_url: str, tmp_path: Path
) -> None:
    flags = {"child_protection_plan": 1, "looked_after": 2}
    kids = {flag: child(n, vulnerabilities=[flag]) for flag, n in flags.items()}
    reported_at = datetime(2025, 11, 4, 9, 30, tzinfo=UTC)  # the samples' event time on that day
    with running_pipeline(kafka_settings, postgres_url, tmp_path) as pipeline:
        # The simulated clock stands at 2025-11-04 12:00 for the whole test.
        with pipeline.referral_client(pipeline.team_key) as team:
            for kid in kids.values():
                unknown = sample_event_dict(
                    "whereabouts-unknown", kid=kid, on=date(2025, 11, 4), school_urn=None
                )
                pipeline.submit_with_retry(team, unknown)
        wait_until(lambda: len(pipeline.smtp.box.to(MASH)) >= 2, timeout_s=90, what="two MASH emails")

        token = issue_token(Settings(signing_key=SIGNING_KEY), "cw", Role.CASEWORKER, LA)
        tracking = httpx.Client(
            base_url=pipeline.url("tracking"), headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        engine = make_engine(postgres_url)
        try:
            mash_bodies = [body_of(m) for m in pipeline.smtp.box.to(MASH)]
            for flag, kid in kids.items():
                found = tracking.post(
                    "/v1/children/search", json={"upn": kid["upn"], "reason": "safeguarding test"}
                )
                assert found.status_code == 200, found.text
                [case] = found.json()
                assert case["state"] == "whereabouts_unknown"
                # The case page says what the flag says: known to social care, not "none".
                assert case["social_care_status"] == flag
                assert flag in case["vulnerabilities"]
                assert sum(case["case_id"] in body for body in mash_bodies) == 1, flag
                with engine.connect() as conn:
                    steps = conn.execute(text(STEPS), {"child": case["child_id"]}).all()
                sent = [(rule, level, due) for rule, level, due, published in steps if published]
                # MASH and the caseworker at the event's own time: no school day, no ladder wait.
                assert ("known_to_social_care_whereabouts_unknown", "childrens_social_care", reported_at) in [
                    (rule, level, due.astimezone(UTC)) for rule, level, due in sent
                ], sent
                assert ("whereabouts_unknown", "caseworker", reported_at) in [
                    (rule, level, due.astimezone(UTC)) for rule, level, due in sent
                ], sent
                # The police step is due 24 hours later: not sent while the clock stands still.
                assert not [s for s in sent if s[1] == "police"], sent
        finally:
            tracking.close()
            engine.dispose()
        assert len(pipeline.smtp.box.to(MASH)) == 2
        assert len(pipeline.smtp.box.to(CASEWORKER)) == 2
        logs = pipeline.logs()
    for name, log in logs.items():
        for kid in kids.values():
            assert kid["upn"] not in log, f"{name} logged a UPN"
