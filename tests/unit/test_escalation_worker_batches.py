"""The escalation worker's batches (SQLite, no broker): a partition's records in one transaction with their
watermark, a record that cannot be read dead-lettered alone, a batch whose handling fails leaves nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from services.escalation.app import MIGRATIONS, load_deps
from services.escalation.models import EscalationDeadline, EscalationOutbox, EscalationProcessedEvent
from services.escalation.settings import EscalationSettings
from services.escalation.timesource import SimulatedTime
from services.escalation.watermarks import watermarks
from services.escalation.worker import EscalationWorker
from shared.consumer import Record as _Record
from shared.db import make_engine, migrate
from shared.events.catalogue import encode_event
from shared.events.envelope import Envelope
from shared.events.internal import CaseState
from shared.topics import CASE_TRANSITIONS, DEAD_LETTER
from tests.support.escalation import transition


def utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


@pytest.fixture
def settings(tmp_path: Path) -> EscalationSettings:
    return EscalationSettings(topic_prefix="t-", database_url=f"sqlite:///{tmp_path / 'esc.db'}")


@pytest.fixture
def engine(settings: EscalationSettings) -> Iterator[Engine]:
    migrate(settings.database_url, MIGRATIONS, "escalation")
    eng = make_engine(settings.database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def worker(settings: EscalationSettings, engine: Engine) -> EscalationWorker:
    return EscalationWorker(settings, engine, load_deps(settings), SimulatedTime(utc(2025, 11, 3, 12)))


def record(settings: EscalationSettings, offset: int, value: bytes, partition: int = 1) -> _Record:
    return _Record(CASE_TRANSITIONS.name(settings), partition, offset, b"k", value)


def missing(hour: int) -> Envelope:
    return transition(uuid.uuid4(), CaseState.WHEREABOUTS_UNKNOWN, utc(2025, 11, 3, hour))


def counts(engine: Engine) -> tuple[int, int, int]:
    with Session(engine) as session:
        processed = session.exec(select(func.count()).select_from(EscalationProcessedEvent)).one()
        clocks = session.exec(select(func.count()).select_from(EscalationDeadline)).one()
        dead_letters = col(EscalationOutbox.topic) == "t-" + DEAD_LETTER.base_name
        dead = session.exec(select(func.count()).select_from(EscalationOutbox).where(dead_letters)).one()
    return int(processed), int(clocks), int(dead)


def test_a_batch_is_applied_in_one_transaction_with_its_watermark(
    worker: EscalationWorker, settings: EscalationSettings, engine: Engine
) -> None:
    batch = [record(settings, 0, encode_event(missing(9))), record(settings, 1, b"not an event")]
    batch.append(record(settings, 2, encode_event(missing(8))))  # older than the record before it: late
    assert [o.action for o in worker.handle_records(batch)] == ["applied", "dead_lettered", "applied"]
    assert counts(engine) == (2, 2, 1)  # the unreadable record is dead-lettered alone
    with Session(engine) as session:
        marks = watermarks(session, [CASE_TRANSITIONS.name(settings)])
    assert marks == {(CASE_TRANSITIONS.name(settings), 1): utc(2025, 11, 3, 9)}  # the newest, not the last
    with Session(engine) as session:
        (partition,) = set(session.exec(select(EscalationDeadline.partition)).all())
    assert partition == 1  # the clocks are decided on their own partition's horizon
    # Redelivered (a crash before the offsets were committed): nothing happens twice.
    assert [o.action for o in worker.handle_records(batch)] == ["duplicate", "dead_lettered", "duplicate"]
    assert counts(engine)[:2] == (2, 2)


def test_a_batch_whose_handling_fails_writes_nothing(
    worker: EscalationWorker, settings: EscalationSettings, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison = missing(10)
    dispatch = worker._dispatch

    def failing(session: Session, event: Envelope, now: datetime, *fact: Envelope | None) -> object:
        if event.event_id == poison.event_id:
            raise RuntimeError("database went away")
        return dispatch(session, event, now, *fact)

    monkeypatch.setattr(worker, "_dispatch", failing)
    batch = [record(settings, 0, encode_event(missing(9))), record(settings, 1, encode_event(poison))]
    with pytest.raises(RuntimeError):
        worker.handle_records(batch)
    assert counts(engine) == (0, 0, 0)  # rolled back: the consumer goes one by one and retries the poison
    with Session(engine) as session:
        assert watermarks(session, [CASE_TRANSITIONS.name(settings)]) == {}
    assert worker.handle_record(batch[0]).action == "applied"
