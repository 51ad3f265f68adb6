"""The bus client for MIS integrations: validates locally with the service's rules and produces the same
envelope onto the intake topic; refused events never reach it."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from devtools.samples import DEMO_LA, DEMO_SCHOOL_URN, sample_event_dict
from services.referral.client import IntakeProducer, main
from shared.events import decode_inbound
from shared.settings import Settings
from shared.topics import INTAKE, URGENT_INTAKE
from tests.support.kafka import read_topic

pytestmark = pytest.mark.integration


def test_library_validates_stamps_and_produces(kafka_settings: Settings) -> None:
    good = sample_event_dict("pupil-left-roll", child_serial=1)
    good["source"] = {"system": "Arbor"}  # the client fills in its own LA and URN
    future = sample_event_dict("pupil-left-roll", child_serial=2)
    future["payload"]["leaving_date"] = "2999-01-01"
    other_school = sample_event_dict("pupil-left-roll", child_serial=3)
    other_school["payload"]["school_urn"] = "108001"
    with IntakeProducer(
        kafka_settings, la_code=DEMO_LA, school_urn=DEMO_SCHOOL_URN, system="SIMS"
    ) as producer:
        results = producer.send([good, future, other_school])
    assert [r.ok for r in results] == [True, False, False]
    assert results[1].problems[0].rule == "not_in_future"
    assert results[2].problems[0].rule == "client_school"
    records = read_topic(kafka_settings, INTAKE.name(kafka_settings), expect=1, timeout_s=20)
    assert len(records) == 1 and records[0].key.decode() == good["payload"]["child"]["upn"]
    event = decode_inbound(records[0].value)
    assert str(event.event_id) == good["event_id"]
    assert (event.source.system, event.source.la_code, event.source.school_urn) == (
        "Arbor",
        DEMO_LA,
        DEMO_SCHOOL_URN,
    )


def test_cli_sends_a_jsonl_file(kafka_settings: Settings, tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("CME_KAFKA_BOOTSTRAP", kafka_settings.kafka_bootstrap)
    monkeypatch.setenv("CME_TOPIC_PREFIX", kafka_settings.topic_prefix)
    events = [sample_event_dict("absence-threshold-crossed", child_serial=n) for n in (1, 2)]
    for e in events:
        e["payload"].update(first_absent_date="2025-10-20", last_absent_date="2025-10-31")
    events[1]["payload"]["school_days"] = 3  # under the 10-day threshold
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(orjson.dumps(e) for e in events) + b"\n")
    assert main(["send", "--file", str(path), "--la", DEMO_LA, "--urn", DEMO_SCHOOL_URN]) == 1  # one refused
    lines = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(x["line"], x["ok"]) for x in lines] == [(1, True), (2, False)]
    assert lines[1]["errors"][0] == {
        "field": "payload.school_days",
        "rule": "threshold_not_met",
        "message": "unauthorised_10_consecutive_days needs at least 10 school days, got 3",
    }
    records = read_topic(kafka_settings, INTAKE.name(kafka_settings), expect=1, timeout_s=20)
    assert [orjson.loads(r.value)["event_id"] for r in records] == [events[0]["event_id"]]


def test_a_fact_with_a_safeguarding_concern_goes_on_the_urgent_lane(kafka_settings: Settings) -> None:
    roll = sample_event_dict("pupil-left-roll", child_serial=4)
    concern = sample_event_dict("pupil-left-roll", child_serial=5)
    concern["payload"]["safeguarding_concern"] = True
    with IntakeProducer(kafka_settings, la_code=DEMO_LA, school_urn=DEMO_SCHOOL_URN) as producer:
        assert [r.ok for r in producer.send([roll, concern])] == [True, True]
    urgent = read_topic(kafka_settings, URGENT_INTAKE.name(kafka_settings), expect=1, timeout_s=20)
    ordinary = read_topic(kafka_settings, INTAKE.name(kafka_settings), expect=1, timeout_s=20)
    assert [orjson.loads(r.value)["event_id"] for r in urgent] == [concern["event_id"]]
    assert [orjson.loads(r.value)["event_id"] for r in ordinary] == [roll["event_id"]]
