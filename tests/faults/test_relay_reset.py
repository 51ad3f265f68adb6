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
from shared.outbox import run_relay

pytestmark = [pytest.mark.faults]


class BrokenUntilReset:
    """Sends fail with a fatal producer error until the owner replaces the producer."""

    def __init__(self) -> None:
        self.broken = True
        self.resets = 0
        self.sent: list[bytes] = []

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        if self.broken:
            raise RuntimeError("OutOfOrderSequenceNumber")
        self.sent.append(value)

    async def reset(self) -> None:
        self.resets += 1
        self.broken = False


async def test_relay_resets_a_failed_producer_and_publishes(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'outbox.db'}")
    SQLModel.metadata.create_all(engine, tables=[EscalationOutbox.__table__])  # type: ignore[attr-defined]
    with Session(engine) as session:
        session.add(EscalationOutbox(event_id="e1", topic="t", key="k", value=b"one"))
        session.commit()
    producer, stop = BrokenUntilReset(), asyncio.Event()
    relay = asyncio.create_task(run_relay(engine, EscalationOutbox, producer.send, stop, idle_s=0.05,
                                          reset=producer.reset))  # fmt: skip
    deadline = asyncio.get_running_loop().time() + 10
    while not producer.sent and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(relay, 5)
    assert producer.resets == 1 and producer.sent == [b"one"]
    with Session(engine) as session:
        assert session.exec(select(EscalationOutbox)).one().published_at is not None
