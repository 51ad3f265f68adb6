"""Attendance marks to an alert, as processes on the real broker, PostgreSQL and an SMTP server.

A school uploads two weeks of session marks. One pupil is absent without authorisation (code O) for ten
school days: the attendance worker emits absence-threshold-crossed, tracking opens a case in
on_roll_at_risk, and the escalation rule for ten days of unauthorised absence (the regulation 13 return)
alerts the caseworker. Another pupil comes back on the tenth day: no crossing, no case, no alert.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devtools.samples import make_upn
from shared.auth import Role, issue_token
from shared.settings import Settings
from tests.support.kafka import wait_until
from tests.support.pipeline import CASEWORKER, LA, SIGNING_KEY, Pipeline, body_of, running_pipeline, set_clock

pytestmark = pytest.mark.e2e

SCHOOL = "108000"
FIRST_DAY = date(2025, 11, 3)  # a Monday after half term; no bank holiday in the next fortnight


@pytest.fixture
def pipeline(kafka_settings: Settings, postgres_url: str, tmp_path: Path) -> Iterator[Pipeline]:
    services = ("tracking", "escalation", "notify", "attendance")
    with running_pipeline(kafka_settings, postgres_url, tmp_path, services=services) as running:
        yield running


def _school_days(first: date, count: int) -> list[date]:
    days: list[date] = []
    day = first
    while len(days) < count:
        if day.weekday() < 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def _marks(upn: str, codes_by_day: list[tuple[date, str]]) -> list[dict[str, str]]:
    return [
        {
            "upn": upn,
            "school_urn": SCHOOL,
            "la_code": LA,
            "date": day.isoformat(),
            "session": session,
            "code": code,
            "recorded_at": f"{day.isoformat()}T{'09:10' if session == 'AM' else '13:40'}:00+00:00",
        }
        for day, code in codes_by_day
        for session in ("AM", "PM")
    ]


def test_ten_days_of_unauthorised_absence_reach_the_caseworker(pipeline: Pipeline) -> None:
    absent, returned = make_upn(LA, 2000, 14, 501), make_upn(LA, 2000, 14, 502)
    days = _school_days(FIRST_DAY, 10)
    marks = _marks(absent, [(d, "O") for d in days]) + _marks(
        returned, [(d, "O") for d in days[:9]] + [(days[9], "/")]
    )
    # The rule's clock is 0 school days: due at the end of the day the threshold was crossed.
    set_clock(pipeline.clock, f"{(days[-1] + timedelta(days=1)).isoformat()}T08:00:00+00:00")

    uploader = issue_token(Settings(signing_key=SIGNING_KEY), "mis-feed", Role.SERVICE, LA)
    response = httpx.post(
        f"{pipeline.url('attendance')}/v1/attendance/marks",
        json=marks,
        headers={"Authorization": f"Bearer {uploader}"},
        timeout=30,
    )
    assert response.status_code == 202, response.text

    # Tracking opens a case for the absent pupil only, in on_roll_at_risk.
    caseworker = issue_token(Settings(signing_key=SIGNING_KEY), "cw", Role.CASEWORKER, LA)
    tracking = httpx.Client(
        base_url=pipeline.url("tracking"), headers={"Authorization": f"Bearer {caseworker}"}
    )

    def case_of(upn: str) -> list[dict[str, object]]:
        found = tracking.post("/v1/children/search", json={"upn": upn, "reason": "attendance alert"})
        assert found.status_code == 200, found.text
        return list(found.json())

    [case] = wait_until(lambda: case_of(absent), timeout_s=60, what="a case for the absent pupil")
    assert case["state"] == "on_roll_at_risk"

    # The caseworker is alerted once, for the unauthorised-absence rule, with no personal data in the mail.
    wait_until(lambda: pipeline.smtp.box.to(CASEWORKER), timeout_s=60, what="the caseworker's alert")
    [mail] = pipeline.smtp.box.to(CASEWORKER)
    body = body_of(mail)
    assert "unauthorised_absence_10_days" in body
    assert str(case["case_id"]) in body
    assert absent not in body and absent not in mail["Subject"]

    # The pupil who came back on the tenth day has no case, once the worker has processed every mark.
    def marks_processed() -> float:
        text = httpx.get(f"{pipeline.url('attendance')}/metrics").text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "cme_attendance_marks"
            for sample in family.samples
            if sample.name == "cme_attendance_marks_total"
        )

    wait_until(lambda: marks_processed() == len(marks), timeout_s=60, what="every mark processed")
    assert case_of(returned) == []
    assert len(pipeline.smtp.box.messages) == 1
