"""Transactional outbox: a service writes the events it must publish in the same database transaction as its
own state, and a relay publishes them to Kafka afterwards. A crash between the two repeats the publish (at
least once); consumers are idempotent on event_id, so the effect is once.

Each service defines its own table by subclassing ``OutboxBase`` (tables belong to one service).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Field, Session, SQLModel, col, select

from shared.events.envelope import Envelope, utcnow
from shared.logs import get_logger

log = get_logger(__name__)


class OutboxBase(SQLModel):
    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(index=True, unique=True, max_length=36)
    topic: str = Field(max_length=255)
    key: str | None = Field(default=None, max_length=255)
    value: bytes
    created_at: datetime = Field(default_factory=utcnow)
    published_at: datetime | None = Field(default=None, index=True)


def add_to_outbox(
    session: Session, model: type[OutboxBase], topic: str, key: str | None, event: Envelope
) -> None:
    """Queue an event for publishing as part of the caller's transaction (no-op if already queued)."""
    exists = session.exec(select(model.id).where(model.event_id == str(event.event_id))).first()
    if exists is None:
        session.add(
            model(event_id=str(event.event_id), topic=topic, key=key, value=event.model_dump_json().encode())
        )


Send = Callable[[str, bytes | None, bytes], Awaitable[Any]]


async def relay_once(engine: Engine, model: type[OutboxBase], send: Send, batch: int = 500) -> int:
    """Publish the oldest unpublished rows, in order; returns how many were published."""

    def load() -> list[OutboxBase]:
        with Session(engine) as session:
            stmt = select(model).where(col(model.published_at).is_(None)).order_by(col(model.id)).limit(batch)
            return list(session.exec(stmt).all())

    rows = await asyncio.to_thread(load)
    if not rows:
        return 0
    for row in rows:
        await send(row.topic, row.key.encode() if row.key else None, row.value)

    def mark() -> None:
        with Session(engine) as session:
            ids = [r.id for r in rows]
            for r in session.exec(select(model).where(col(model.id).in_(ids))).all():
                r.published_at = utcnow()
                session.add(r)
            session.commit()

    await asyncio.to_thread(mark)
    return len(rows)


async def run_relay(
    engine: Engine,
    model: type[OutboxBase],
    send: Send,
    stop: asyncio.Event,
    idle_s: float = 0.2,
    reset: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Drain the outbox until ``stop`` is set; a broker outage only delays publishing.

    ``reset`` is called after a failed batch: an idempotent producer can be left failing every later send
    (OutOfOrderSequenceNumber after a broker restart), so its owner replaces it there."""
    while not stop.is_set():
        try:
            published = await relay_once(engine, model, send)
        except Exception:
            log.exception("outbox_relay_failed")
            published = 0
            if reset is not None:
                try:
                    await reset()
                except Exception as exc:  # the broker is still away: the next failure resets again
                    log.warning("outbox_producer_reset_failed", error=type(exc).__name__)
            await asyncio.sleep(1.0)
        if not published:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=idle_s)
