"""``episodes.load_idle``: of a batch's children, those with no pending deadline and no running escalation,
read in one statement per LA (a consumer's small batches pay each statement's fixed cost many times a
second)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.escalation.episodes import is_idle, load_idle
from services.escalation.models import DeadlineStatus, EscalationDeadline, EscalationRecord, EscalationStatus
from tests.support.escalation import sqlite_store
from tests.support.statements import statements_sent

AT = datetime(2026, 3, 2, 9, tzinfo=UTC)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    yield from sqlite_store(tmp_path)


def _deadline(child: str, status: str) -> EscalationDeadline:
    return EscalationDeadline(
        id=str(uuid.uuid4()), kind="clock", status=status, due_at=AT, la_code="801", child_id=child,
        rule_id="r", watch_key="w", trigger_event_id=str(uuid.uuid4()), rule_json="{}", rule_fingerprint="f",
    )  # fmt: skip


def _escalation(child: str, status: str, ended: bool = False) -> EscalationRecord:
    return EscalationRecord(
        id=str(uuid.uuid4()), la_code="801", child_id=child, case_id=str(uuid.uuid4()), rule_id="r",
        rule_fingerprint="f", rule_json="{}", watch_key="w", case_state="missing_education", status=status,
        step_due_at=AT, fired_at=AT, ended_at=AT if ended else None,
    )  # fmt: skip


def test_only_children_with_nothing_pending_or_running_are_idle_in_one_statement_per_la(
    engine: Engine,
) -> None:
    children = {
        name: str(uuid.uuid4()) for name in ("pending", "running", "fired", "resolved", "ended", "new")
    }
    with Session(engine) as session:
        session.add(_deadline(children["pending"], DeadlineStatus.PENDING))
        session.add(_deadline(children["fired"], DeadlineStatus.FIRED))
        session.add(_escalation(children["running"], EscalationStatus.ACKNOWLEDGED))
        session.add(_escalation(children["resolved"], EscalationStatus.RESOLVED))
        session.add(_escalation(children["ended"], EscalationStatus.OPEN, ended=True))
        session.commit()
    keys = [(child, "801") for child in children.values()] + [(children["new"], "802")]
    with Session(engine) as session, statements_sent(engine) as sent:
        load_idle(session, keys)
        idle = {name for name, child in children.items() if is_idle(session, child, "801")}
        assert is_idle(session, children["new"], "802")
    assert idle == {"fired", "resolved", "ended", "new"}
    assert len(sent) == 2  # one per LA
