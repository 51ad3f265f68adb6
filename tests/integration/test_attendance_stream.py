"""The attendance stream on the real broker: marks uploaded over HTTP and sent with the Kafka client, the
worker as a real process (RocksDB store), absence-threshold events read back from this test's intake topic."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime, time
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from devtools.samples import make_upn
from services.attendance.app import create_app
from services.attendance.client import AttendanceClient, InvalidMarks
from services.attendance.settings import AttendanceSettings
from shared.auth import Role, issue_token
from shared.events.catalogue import decode_inbound
from shared.events.inbound import AbsenceThresholdCrossed, AbsenceThresholdRetracted
from shared.events.vocab import AbsenceRule
from shared.school_calendar import CalendarRegistry
from shared.settings import PROJECT_ROOT, Settings
from shared.topics import ATTENDANCE, INTAKE
from tests.support.kafka import read_topic

pytestmark = pytest.mark.integration

LA = "801"
URN = "108000"
CAL = CalendarRegistry().calendar_for(LA)
UNAUTH = AbsenceRule.UNAUTHORISED_10_DAYS


def school_days(first: date, n: int) -> list[date]:
    out = [CAL.add_school_days(first, 0)]
    while len(out) < n:
        out.append(CAL.next_school_day(out[-1]))
    return out


def rows(upn: str, days: list[date], code: str, recorded: datetime | None = None) -> list[dict[str, Any]]:
    out = []
    for d in days:
        for session, hour in (("AM", 9), ("PM", 13)):
            at = recorded or datetime.combine(d, time(hour, 30), tzinfo=UTC)
            out.append(
                {"upn": upn, "school_urn": URN, "la_code": LA, "date": d.isoformat(), "session": session,
                 "code": code, "recorded_at": at.isoformat()}
            )  # fmt: skip
    return out


def start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CME_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "CME_TOPIC_PREFIX": settings.topic_prefix,
        "CME_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "CME_DATA_DIR": str(settings.data_dir),
        "CME_ATTENDANCE_STORE": "rocksdb",
        "CME_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.attendance.main", "worker"],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def stop(worker: subprocess.Popen[bytes]) -> bytes:
    worker.terminate()
    try:
        _, err = worker.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        worker.kill()
        _, err = worker.communicate()
    return err


def test_marks_in_threshold_events_out(kafka_settings: Settings) -> None:
    settings = AttendanceSettings(**kafka_settings.model_dump())
    absent, returner, corrected = (make_upn(LA, 2000, 14, n) for n in (1, 2, 3))
    run = school_days(date(2024, 9, 23), 10)
    returner_days = school_days(date(2024, 9, 23), 19)
    token = issue_token(settings, "school-data-processor", Role.SERVICE, LA)

    # Bulk HTTP upload: a pupil absent 10 school days, and one back in school on day 9 who is then away 10.
    upload = rows(absent, run, "N") + rows(returner, returner_days[:8], "N")
    upload += rows(returner, returner_days[8:9], "/") + rows(returner, returner_days[9:], "O")
    with TestClient(create_app(settings)) as http:
        response = http.post(
            "/v1/attendance/marks", content=orjson.dumps(upload),
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"},
        )  # fmt: skip
        assert response.status_code == 202, response.text
        assert response.json()["accepted"] == len(upload)

    # Direct Kafka: 10 days of N, then the school corrects day 3 to illness (recorded later).
    with AttendanceClient(settings) as client:
        assert client.send_rows(rows(corrected, run, "N")) == 20
        correction = rows(corrected, run[2:3], "I", recorded=datetime(2024, 10, 8, 10, tzinfo=UTC))
        assert client.send_rows(correction) == 2
        with pytest.raises(InvalidMarks) as refused:
            client.send_rows([{**correction[0], "code": "H"}])  # H is not a 2024 code
        assert refused.value.errors[0]["field"] == "payload.code"

    worker = start_worker(settings)
    try:
        # absent: 1 crossing; returner: 1 crossing (the second run); corrected: 1 crossing + its retraction.
        records = read_topic(settings, INTAKE.name(settings), expect=4, timeout_s=120)
    finally:
        err = stop(worker)
    assert b"Traceback" not in err, err.decode(errors="replace")[-3000:]
    events = [decode_inbound(r.value) for r in records]
    crossed = [e for e in events if isinstance(e, AbsenceThresholdCrossed) and e.payload.rule == UNAUTH]
    pupils = (absent, returner, corrected)
    by_pupil = {upn: [c for c in crossed if c.payload.child.upn == upn] for upn in pupils}
    assert len(by_pupil[absent]) == 1 and by_pupil[absent][0].payload.first_absent_date == run[0]
    assert by_pupil[absent][0].source.system == "cme-attendance"
    [second_run] = by_pupil[returner]
    assert second_run.payload.first_absent_date == returner_days[9]  # nothing for the first 8 days
    [undone] = by_pupil[corrected]
    retracted = [e for e in events if isinstance(e, AbsenceThresholdRetracted)]
    assert [r.payload.retracts_event_id for r in retracted] == [str(undone.event_id)]
    assert {r.key for r in records} == {absent.encode(), returner.encode(), corrected.encode()}
    assert len(events) == 4  # exactly once each: no duplicates behind


def test_upload_is_authenticated_scoped_to_the_la_and_size_limited(kafka_settings: Settings) -> None:
    settings = AttendanceSettings(**kafka_settings.model_dump(), attendance_upload_max_bytes=4096)
    upn = make_upn(LA, 2000, 14, 9)
    batch = rows(upn, school_days(date(2024, 9, 23), 1), "N")
    with TestClient(create_app(settings)) as http:
        assert http.post("/v1/attendance/marks", json=batch).status_code == 401
        caseworker = issue_token(settings, "cw", Role.CASEWORKER, LA)
        headers = {"authorization": f"Bearer {caseworker}"}
        assert http.post("/v1/attendance/marks", json=batch, headers=headers).status_code == 403
        other_la = issue_token(settings, "svc", Role.SERVICE, "802")
        headers = {"authorization": f"Bearer {other_la}"}
        response = http.post("/v1/attendance/marks", json=batch, headers=headers)
        assert response.status_code == 422
        first_error = response.json()["errors"][0]
        assert first_error == {"row": 1, "field": "la_code", "error": "not the LA your token acts for"}
        service = {"authorization": f"Bearer {issue_token(settings, 'svc', Role.SERVICE, LA)}"}
        bad = [{**batch[0], "session": "EVENING"}, batch[1]]
        response = http.post("/v1/attendance/marks", json=bad, headers=service)
        assert response.status_code == 422 and response.json()["errors"][0]["row"] == 1
        assert response.json()["errors"][0]["field"] == "payload.session"
        big = rows(upn, school_days(date(2024, 9, 23), 30), "N")
        assert http.post("/v1/attendance/marks", json=big, headers=service).status_code == 413
        csv_body = "upn,school_urn,la_code,date,session,code\n" + f"{upn},{URN},{LA},2024-09-23,AM,N\n"
        response = http.post(
            "/v1/attendance/marks", content=csv_body, headers={**service, "content-type": "text/csv"}
        )
        assert response.status_code == 202 and response.json()["accepted"] == 1
        assert http.get("/health/ready").status_code == 200
    [record] = read_topic(settings, ATTENDANCE.name(settings), expect=1, timeout_s=30)
    assert record.key == upn.encode()
