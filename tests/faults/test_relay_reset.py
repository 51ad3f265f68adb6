"""The outbox relay replaces a producer that has failed a batch: a producer left unusable (after a broker
restart an idempotent producer can fail every later send with OutOfOrderSequenceNumber) must not stop
publishing for good. The failing producer here is a stand-in for that fatal state; the relay, the outbox
table and the database are real."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlmodel import Session, SQLModel, select

from services.escalation.models import EscalationOutbox
from shared.db import make_engine
from shared.outbox import OutboxRelay
from tests.support.producer import RecordingProducer

pytestmark = [pytest.mark.faults]


class StandInProducer(RecordingProducer):
    """The first producer made fails every send with a fatal producer error; later ones work."""

    made = 0

    def __init__(self, sent: list[tuple[str, bytes]]) -> None:
        super().__init__(sent)
        StandInProducer.made += 1
        self.broken = StandInProducer.made == 1

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[None]:
        if self.broken:
            raise RuntimeError("OutOfOrderSequenceNumber")
        return await super().send(topic, value, key)


async def test_relay_replaces_a_failed_producer_and_publishes(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'outbox.db'}")
    SQLModel.metadata.create_all(engine, tables=[EscalationOutbox.__table__])  # type: ignore[attr-defined]
    with Session(engine) as session:
        session.add(EscalationOutbox(event_id="e1", topic="t", key="k", value=b"one"))
        session.commit()
    sent: list[tuple[str, bytes]] = []
    StandInProducer.made = 0
    stop = asyncio.Event()
    relay = OutboxRelay(engine, EscalationOutbox, lambda: StandInProducer(sent), idle_s=0.05)
    running = asyncio.create_task(relay.run(stop))
    deadline = asyncio.get_running_loop().time() + 10
    while not sent and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(running, 5)
    assert StandInProducer.made == 2 and [value for _, value in sent] == [b"one"]
    with Session(engine) as session:
        assert session.exec(select(EscalationOutbox)).one().published_at is not None
