"""Log lines are JSON, carry the event's identifiers and correlation id, and never a child's personal data."""

from __future__ import annotations

import json

import pytest
import structlog

from devtools.samples import sample_event
from shared.logs import bind_event, configure_logging, get_logger


@pytest.fixture(autouse=True)
def _fresh_logging():  # type: ignore[no-untyped-def]
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


def _lines(err: str) -> list[dict]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def test_bound_event_marks_lines_and_personal_fields_are_redacted(capsys) -> None:  # type: ignore[no-untyped-def]
    configure_logging("tracking", "INFO", json=True)
    event = sample_event("whereabouts-unknown")
    bind_event(event)
    kid = event.payload.child.model_dump()
    get_logger("t").info("fact_resolved", child=kid, surname="Example", score=0.97)
    [line] = _lines(capsys.readouterr().err)
    assert line["event"] == "fact_resolved"
    assert line["service"] == "tracking"
    assert line["event_id"] == str(event.event_id)
    assert line["event_type"] == "whereabouts-unknown"
    assert line["la_code"] == "801"
    assert line["child"] == "[redacted]" and line["surname"] == "[redacted]"
    assert line["score"] == 0.97
    assert event.payload.child.upn not in json.dumps(line)


def test_the_next_event_replaces_the_previous_ones_identifiers(capsys) -> None:  # type: ignore[no-untyped-def]
    configure_logging("escalation", "INFO", json=True)
    first, second = sample_event("child-located"), sample_event("pupil-left-roll")
    bind_event(first)
    bind_event(second)
    get_logger("t").info("handled")
    [line] = _lines(capsys.readouterr().err)
    assert line["event_id"] == str(second.event_id)
    assert line["event_type"] == "pupil-left-roll"


def test_a_newline_in_a_value_cannot_forge_a_log_line(capsys) -> None:  # type: ignore[no-untyped-def]
    configure_logging("referral", "INFO", json=True)
    get_logger("t").warning("rejected", reason='bad\n{"event": "forged", "level": "info"}')
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["event"] == "rejected"
