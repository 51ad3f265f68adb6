"""No child leaves sight until their education is confirmed (issue 14), end to end: the services as processes
on the real broker, PostgreSQL and SMTP, with simulated time in escalation (the clock file).

Dates are on the default 2025/26 calendar: Mon 3 Nov 2025 is a school day; the 10th school day after it is
Mon 17 Nov; a permanent exclusion from Mon 24 Nov has its sixth school day on Mon 1 Dec.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from devtools.samples import child, sample_event_dict
from shared.auth import Role, issue_token
from shared.db import make_engine
from shared.settings import Settings
from tests.support.kafka import wait_until
from tests.support.pipeline import (
    CASEWORKER,
    LA,
    SIGNING_KEY,
    Pipeline,
    body_of,
    running_pipeline,
    set_clock,
    wait_until_settled,
)

pytestmark = pytest.mark.e2e

MASH = "mash@la.test"
OTHER_LA = "803"  # on this deployment
OUTSIDE_LA = "802"  # a real LA that is not
DEPLOYMENT = {"CME_TRACKING_DEPLOYMENT_LAS": f"{LA},{OTHER_LA}"}
# LA 803 is on the deployment: its caseworker is alerted about the children handed to it.
DIRECTORY_803 = """
las:
  "803":
    email_channel: smtp
    people:
      - {id: cw803, name: Caseworker 803, email: caseworker@803.test}
    roles:
      caseworker: [person:cw803]
      senior_cme_officer: [person:cw803]
      childrens_social_care: [person:cw803]
      police: [person:cw803]
"""
STEPS = """
SELECT e.rule_id, s.level, s.due_at FROM escalation_steps s
JOIN escalation_escalations e ON e.id = s.escalation_id
WHERE e.case_id = :case AND s.published ORDER BY s.due_at, e.rule_id, s.level
"""


def event(event_type: str, kid: dict[str, Any], on: date, *, school: str | None = "108000",
          la: str = LA, **payload: Any) -> dict[str, Any]:  # fmt: skip
    data = sample_event_dict(event_type, kid=kid, on=on, la_code=la, school_urn=school)
    data["payload"].update(payload)
    return data


class Run:
    """One pipeline, its senders, and a reader of cases in either LA."""

    def __init__(self, pipeline: Pipeline, postgres_url: str) -> None:
        self.p = pipeline
        self.engine = make_engine(postgres_url)
        self.sent: list[tuple[str, str]] = []  # (api key, event id)
        self.upns: set[str] = set()
        self.keys = {"school": pipeline.school_key, "team": pipeline.team_key}

    def key(self, name: str, *args: str, la: str = LA) -> str:
        if name not in self.keys:
            self.keys[name] = self.p.create_api_key(*args, la=la)
        return self.keys[name]

    def send(self, key: str, data: dict[str, Any]) -> None:
        with self.p.referral_client(self.keys[key]) as client:
            self.p.submit_with_retry(client, data)
        self.sent.append((key, data["event_id"]))
        self.upns.add(data["payload"]["child"]["upn"])

    def processed(self) -> None:
        def done() -> bool:
            for key, event_id in self.sent:
                with self.p.referral_client(self.keys[key]) as client:
                    if client.get(f"/v1/events/{event_id}").json()["status"] != "processed":
                        return False
            return True

        wait_until(done, timeout_s=90, what="every event processed")

    def case(self, kid: dict[str, Any], la: str = LA) -> dict[str, Any]:
        token = issue_token(Settings(signing_key=SIGNING_KEY), "cw", Role.CASEWORKER, la)
        with httpx.Client(
            base_url=self.p.url("tracking"), headers={"Authorization": f"Bearer {token}"}, timeout=10
        ) as tracking:
            found = tracking.post("/v1/children/search", json={"upn": kid["upn"], "reason": "e2e check"})
            assert found.status_code == 200, found.text
            [case] = found.json()
            read = tracking.get(f"/v1/children/{case['child_id']}", params={"reason": "e2e check"})
            assert read.status_code == 200, read.text
            return dict(read.json()["case"])

    def wait_state(self, kid: dict[str, Any], state: str, la: str = LA) -> dict[str, Any]:
        seen: dict[str, Any] = {}

        def reached() -> bool:
            try:
                seen.update(self.case(kid, la))
            except (AssertionError, ValueError):
                return False
            return seen.get("state") == state

        wait_until(reached, timeout_s=90, what=f"case in {state} (last seen {seen.get('state')})")
        return seen

    def mail(self, to: str, case_id: str, rule: str | None = None) -> list[str]:
        bodies = [body_of(m) for m in self.p.smtp.box.to(to) if rule is None or rule in m["Subject"]]
        return [b for b in bodies if case_id in b]

    def steps(self, case_id: str) -> list[tuple[str, str, datetime]]:
        with self.engine.connect() as conn:
            rows = conn.execute(text(STEPS), {"case": case_id}).all()
        return [(r, level, due.astimezone(UTC)) for r, level, due in rows]

    def pending_deadlines(self, case_id: str) -> list[tuple[str, datetime]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT rule_id, due_at FROM escalation_deadlines WHERE case_id = :c"
                    " AND status = 'pending' AND kind = 'rule' ORDER BY due_at, rule_id"
                ),
                {"c": case_id},
            ).all()
        return [(rule, due.astimezone(UTC)) for rule, due in rows]

    def clock(self, iso: str) -> None:
        set_clock(self.p.clock, iso)
        try:
            wait_until_settled(self.p.database_url, iso)
        except AssertionError:
            with self.engine.connect() as conn:
                for q in (
                    "SELECT rule_id, la_code, due_at FROM escalation_deadlines WHERE status = 'pending'",
                    "SELECT count(*) FROM escalation_outbox WHERE published_at IS NULL",
                    "SELECT state, count(*) FROM notify_delivery GROUP BY state",
                ):
                    print(q, conn.execute(text(q)).all())
            raise


@contextmanager
def run(kafka_settings: Settings, postgres_url: str, tmp_path: Path) -> Iterator[Run]:
    with running_pipeline(kafka_settings, postgres_url, tmp_path, extra_env=DEPLOYMENT) as pipeline:
        pipeline.load_directory(DIRECTORY_803)
        r = Run(pipeline, postgres_url)
        try:
            yield r
        finally:
            r.engine.dispose()
        logs = pipeline.logs()
    for name, log in logs.items():
        for upn in r.upns:
            assert upn not in log, f"{name} logged a UPN"


def test_a_leaver_to_a_named_school_stays_open_until_the_child_registers(
    kafka_settings: Settings, postgres_url: str, tmp_path: Path
) -> None:
    """Three pupils leave school 108000 on Mon 3 Nov 2025 for school 108001 (reg 9(1)(a)); one is registered
    there on Thu 6 Nov, the others are not by the close of the 10th school day (Mon 17 Nov): the caseworker
    is alerted about those two and their cases become missing education as of that moment (escalation's
    clock, decided on event time, folded by tracking). The school's registration of one of them, dated Fri
    14 Nov but sent on Tue 18 Nov, wins: that case closes with the URN and its alert is withdrawn. A fourth
    leaves for school 140001 in LA 803: both LAs see it, and both close only when 803's school registers the
    child."""
    lost, arrived, elsewhere, late = child(41), child(42), child(43), child(44)
    to_108001 = {"known": True, "school_urn": "108001"}
    with run(kafka_settings, postgres_url, tmp_path) as r:
        r.key("school_108001", "--kind", "school", "--name", "new school", "--urn", "108001")
        r.key("school_140001", "--kind", "school", "--name", "803 school", "--urn", "140001", la=OTHER_LA)
        for kid in (lost, arrived, late):
            r.send("school", event("pupil-left-roll", kid, date(2025, 11, 3), deletion_ground="a",
                                   destination=to_108001))  # fmt: skip
        to_140001 = {"known": True, "school_urn": "140001", "la_code": OTHER_LA}
        r.send("school", event("pupil-left-roll", elsewhere, date(2025, 11, 3), deletion_ground="a",
                               destination=to_140001))  # fmt: skip
        r.send("school_108001", event("pupil-registered", arrived, date(2025, 11, 6), school="108001",
                                      school_urn="108001"))  # fmt: skip
        r.processed()
        waiting = r.wait_state(lost, "transfer_pending")
        assert waiting["outcome"] is None and waiting["open_deadlines"] == ["transfer_pending"]
        late_waiting = r.wait_state(late, "transfer_pending")
        closed = r.wait_state(arrived, "in_education")
        assert (closed["outcome"], closed["outcome_ref"]) == ("school", "108001")
        # Both LAs see the child who left for 803's school, each waiting for the registration.
        origin = r.wait_state(elsewhere, "transfer_pending")
        handed = r.wait_state(elsewhere, "transfer_pending", la=OTHER_LA)

        # The end of Mon 17 Nov is the 10th school day: not yet at 22:00 UTC...
        r.clock("2025-11-17T22:00:00+00:00")
        assert r.mail(CASEWORKER, waiting["case_id"]) == []
        # ... and alerted once it has passed, about the child who never arrived only.
        r.clock("2025-11-18T09:00:00+00:00")
        wait_until(lambda: r.mail(CASEWORKER, waiting["case_id"], "transfer_not_registered"), timeout_s=60,
                   what="the transfer alert")  # fmt: skip
        assert ("transfer_not_registered", "caseworker", datetime(2025, 11, 17, 23, 59, 59, tzinfo=UTC)) in (
            r.steps(waiting["case_id"])
        )
        assert r.mail(CASEWORKER, closed["case_id"]) == []
        # The transfer failed: missing education from the due time, with that state's clock.
        missing = r.wait_state(lost, "missing_education")
        assert missing["case_id"] == waiting["case_id"] and missing["outcome"] is None
        assert missing["open_deadlines"] == ["missing_education"]
        assert missing["cause_occurred_at"].startswith("2025-11-17T23:59:59")
        # 10 school days after the due time: the close of Mon 1 Dec.
        due = [("missing_education_no_outcome", datetime(2025, 12, 1, 23, 59, 59, tzinfo=UTC))]
        wait_until(lambda: r.pending_deadlines(waiting["case_id"]) == due, timeout_s=60,
                   what="the missing-education clock from the due time")  # fmt: skip
        wait_until(lambda: r.mail(CASEWORKER, late_waiting["case_id"], "transfer_not_registered"),
                   timeout_s=60, what="the other transfer alert")  # fmt: skip
        r.wait_state(late, "missing_education")

        # 108001's registration of the other child, dated Fri 14 Nov (before the due time), arrives now: by
        # event time the child was never missing, so the case closes with the URN and the clocks stop.
        r.send("school_108001", event("pupil-registered", late, date(2025, 11, 14), school="108001",
                                      school_urn="108001"))  # fmt: skip
        r.processed()
        registered = r.wait_state(late, "in_education")
        assert (registered["outcome"], registered["outcome_ref"]) == ("school", "108001")
        wait_until(lambda: r.pending_deadlines(late_waiting["case_id"]) == [], timeout_s=60,
                   what="the registered child's clocks stopped")  # fmt: skip
        with r.engine.connect() as conn:
            wait_until(
                lambda: conn.execute(
                    text("SELECT close_reason FROM escalation_escalations WHERE case_id = :c"),
                    {"c": late_waiting["case_id"]},
                ).scalar() == "case_resolved:in_education",
                timeout_s=60, what="the transfer alert withdrawn",
            )  # fmt: skip
        assert r.pending_deadlines(waiting["case_id"]) == due  # the lost child's clocks go on

        # 803's school registers the child on Wed 19 Nov: 803 closes, and tells 801, which closes too.
        r.send("school_140001", event("pupil-registered", elsewhere, date(2025, 11, 19), school="140001",
                                      la=OTHER_LA, school_urn="140001"))  # fmt: skip
        r.processed()
        there = r.wait_state(elsewhere, "in_education", la=OTHER_LA)
        here = r.wait_state(elsewhere, "in_education")
        assert (there["outcome"], there["outcome_ref"]) == ("school", "140001")
        assert (here["outcome"], here["outcome_ref"]) == ("school", "140001")
        assert here["case_id"] == origin["case_id"] and there["case_id"] == handed["case_id"]
        assert here["case_id"] != there["case_id"]


def test_home_education_under_child_protection_and_part_time_after_exclusion(
    kafka_settings: Settings, postgres_url: str, tmp_path: Path
) -> None:
    """A home-education notice for a child on a child protection plan (Tue 4 Nov 2025) is refused and goes to
    children's social care at once; another child's home education is found unsuitable and the child is
    missing education again; two more stop home education on Wed 5 Nov, one with no school named (missing
    education, its clock running) and one for school 108001 (waiting, closed by 108001's registration on Fri
    7 Nov); a pupil permanently excluded from Mon 24 Nov on part-time provision from Wed 26 Nov still raises
    the sixth-day alert at the close of Mon 1 Dec."""
    protected = child(51, vulnerabilities=["child_protection_plan"])
    home_educated, excluded = child(52), child(53)
    stopped, to_school, enquiry = child(54), child(55), child(56)
    with run(kafka_settings, postgres_url, tmp_path) as r:
        r.key("school_108001", "--kind", "school", "--name", "new school", "--urn", "108001")
        r.send("school", event("home-education-notified", protected, date(2025, 11, 4)))
        # A s.47 enquiry recorded with no case open (Mon 3 Nov); the school's notice (Tue 4 Nov) has no flag.
        r.send("team", event("social-care-status-changed", enquiry, date(2025, 11, 3), school=None,
                             status="child_protection_enquiry", has_social_worker=True))  # fmt: skip
        r.processed()
        r.send("school", event("home-education-notified", enquiry, date(2025, 11, 4)))
        r.send("school", event("home-education-notified", home_educated, date(2025, 11, 3)))
        r.send("team", event("home-education-unsuitable", home_educated, date(2025, 11, 4), school=None))
        for kid in (stopped, to_school):
            r.send("school", event("home-education-notified", kid, date(2025, 11, 3)))
        r.send("team", event("home-education-ended", stopped, date(2025, 11, 5), school=None))
        r.send("team", event("home-education-ended", to_school, date(2025, 11, 5), school=None,
                             new_school_urn="108001"))  # fmt: skip
        r.processed()
        refused = r.wait_state(protected, "on_roll_at_risk")  # never home educated
        wait_until(lambda: r.mail(MASH, refused["case_id"], "home_education_child_protection"), timeout_s=60,
                   what="the social care alert")  # fmt: skip
        at = datetime(2025, 11, 4, 9, 30, tzinfo=UTC)  # the notice's own time: no school day to wait for
        assert ("home_education_child_protection", "childrens_social_care", at) in r.steps(refused["case_id"])
        under_enquiry = r.wait_state(enquiry, "on_roll_at_risk")  # refused: never home educated
        assert under_enquiry["social_care_status"] == "child_protection_enquiry"
        wait_until(lambda: r.mail(MASH, under_enquiry["case_id"], "home_education_child_protection"),
                   timeout_s=60, what="the social care alert for the child under an enquiry")  # fmt: skip
        assert ("home_education_child_protection", "childrens_social_care", at) in r.steps(
            under_enquiry["case_id"]
        )
        unsuitable = r.wait_state(home_educated, "missing_education")
        assert unsuitable["reason"] == "home_education_unsuitable" and unsuitable["outcome"] is None
        ended = r.wait_state(stopped, "missing_education")
        assert ended["outcome"] is None and ended["open_deadlines"] == ["missing_education"]
        # Missing education from Wed 5 Nov: escalation's clock runs to the close of the 10th school day.
        wait_until(lambda: r.pending_deadlines(ended["case_id"]) == [
            ("missing_education_no_outcome", datetime(2025, 11, 19, 23, 59, 59, tzinfo=UTC))
        ], timeout_s=60, what="the missing-education clock of the ended home education")  # fmt: skip
        named = r.wait_state(to_school, "transfer_pending")
        assert named["open_deadlines"] == ["transfer_pending"]
        r.send("school_108001", event("pupil-registered", to_school, date(2025, 11, 7), school="108001",
                                      school_urn="108001"))  # fmt: skip
        r.processed()
        arrived = r.wait_state(to_school, "in_education")
        assert (arrived["outcome"], arrived["outcome_ref"]) == ("school", "108001")
        wait_until(lambda: r.pending_deadlines(named["case_id"]) == [], timeout_s=60,
                   what="the transfer clock stopped")  # fmt: skip

        r.clock("2025-11-26T12:00:00+00:00")
        r.send("school", event("exclusion-issued", excluded, date(2025, 11, 24)))
        r.send("team", event("provision-started", excluded, date(2025, 11, 26), school=None,
                             provision_type="alternative_provision", school_urn=None, full_time=False,
                             hours_per_week=10))  # fmt: skip
        r.processed()
        part_time = r.wait_state(excluded, "part_time_provision")
        assert "pe_provision_day6" in part_time["open_deadlines"]
        r.clock("2025-12-01T22:00:00+00:00")
        assert r.mail(CASEWORKER, part_time["case_id"], "permanent_exclusion_no_provision") == []
        r.clock("2025-12-02T09:00:00+00:00")
        wait_until(lambda: r.mail(CASEWORKER, part_time["case_id"], "permanent_exclusion_no_provision"),
                   timeout_s=60, what="the sixth-day alert")  # fmt: skip
        day6 = datetime(2025, 12, 1, 23, 59, 59, tzinfo=UTC)
        assert ("permanent_exclusion_no_provision", "caseworker", day6) in r.steps(part_time["case_id"])


def test_an_la_outside_the_deployment_and_an_acknowledged_ladder_with_no_outcome(
    kafka_settings: Settings, postgres_url: str, tmp_path: Path
) -> None:
    """A family moves to LA 802, which is not on this deployment (Tue 4 Nov 2025): the case stays open and the
    caseworker gets the task of contacting 802 at once; it closes only when a person records 802's
    confirmation. A child whose whereabouts are unknown is acknowledged the same day with no outcome: the
    alert comes back at the close of the 10th school day after (Tue 18 Nov)."""
    moved, unknown = child(61), child(62)
    with run(kafka_settings, postgres_url, tmp_path) as r:
        r.send(
            "team", event("moved-out-of-area", moved, date(2025, 11, 4), school=None, new_la_code=OUTSIDE_LA)
        )
        r.send("team", event("whereabouts-unknown", unknown, date(2025, 11, 4), school=None))
        r.processed()
        outside = r.wait_state(moved, "awaiting_la_confirmation")
        assert outside["destination_la_code"] == OUTSIDE_LA
        wait_until(lambda: r.mail(CASEWORKER, outside["case_id"], "handover_outside_deployment"),
                   timeout_s=60, what="the task to contact the other LA")  # fmt: skip
        missing = r.wait_state(unknown, "whereabouts_unknown")
        wait_until(lambda: r.mail(CASEWORKER, missing["case_id"], "whereabouts_unknown"), timeout_s=60,
                   what="the whereabouts alert")  # fmt: skip
        [first] = r.mail(CASEWORKER, missing["case_id"])
        link = re.search(r"(http://\S+/v1/ack/\S+)", first)
        assert link is not None
        assert httpx.post(link.group(1), timeout=10).status_code == 200
        with r.engine.connect() as conn:
            wait_until(
                lambda: conn.execute(
                    text("SELECT count(*) FROM escalation_escalations WHERE case_id = :c AND status ="
                         " 'acknowledged'"), {"c": missing["case_id"]},
                ).scalar(),
                timeout_s=60, what="the acknowledgement in escalation",
            )  # fmt: skip

        # A person records 802's confirmation: the case closes naming 802.
        confirmed = {"origin_la_code": LA, "accepting_la_code": OUTSIDE_LA, "how": "confirmed_by_contact"}
        r.send("team", event("handover-confirmed", moved, date(2025, 11, 6), school=None, **confirmed))
        r.processed()
        left = r.wait_state(moved, "left_area")
        assert (left["outcome"], left["outcome_ref"]) == ("other_la_accepted", OUTSIDE_LA)

        # Acknowledged on Tue 4 Nov (simulated time) with no outcome: back at the close of Tue 18 Nov.
        r.clock("2025-11-18T22:00:00+00:00")
        assert r.mail(CASEWORKER, missing["case_id"], "open_case_review") == []
        r.clock("2025-11-19T09:00:00+00:00")
        wait_until(lambda: r.mail(CASEWORKER, missing["case_id"], "open_case_review"), timeout_s=60,
                   what="the review alert")  # fmt: skip
        review = datetime(2025, 11, 18, 23, 59, 59, tzinfo=UTC)
        assert ("open_case_review", "caseworker", review) in r.steps(missing["case_id"])
        assert r.mail("senior@la.test", missing["case_id"]) == []  # the acknowledged ladder stayed stopped
        assert r.case(unknown)["state"] == "whereabouts_unknown"
