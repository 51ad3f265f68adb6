"""Transactional outbox: a service writes the events it must publish in the same database transaction as its
own state, and a relay publishes them to Kafka afterwards. A crash between the two repeats the publish (at
least once); consumers are idempotent on event_id, so the effect is once.

Each service defines its own table by subclassing ``OutboxBase`` (tables belong to one service) and runs one
``OutboxRelay`` on it: the only way a service publishes (the faust workers aside, whose sinks are faust's).
With several processes of a service on one PostgreSQL database, one relay publishes at a time (the holder of
the table's advisory lock); the others stand by and take over when its connection goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy import select as sa_select
from sqlalchemy import text, update
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Field, Session, SQLModel, col, func, select

from shared.events.envelope import Envelope, utcnow
from shared.kafka import RETRY_S, aiokafka_config, start_with_retry, wait_for_event
from shared.logs import get_logger
from shared.settings import Settings

log = get_logger(__name__)
LINGER_S = 0.02
# A relay that publishes for several processes is not woken by their commits, only by its own: it looks for
# their rows this often. A standby tries for the lock this often.
LEADER_POLL_S = 0.1
STANDBY_S = 1.0
# A standby publishes too when the oldest unpublished row has stayed the oldest this long: the lock's holder
# publishes nothing (stuck, or its lock kept by a connection that outlived it), and the lock must not hold
# an event back. Copies that follow are deduplicated downstream, as after a crash.
PUBLISHER_SILENT_S = 60.0


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


def new_producer(settings: Settings, client_id: str) -> AIOKafkaProducer:
    """The one producer configuration for publishing: every replica acknowledges (acks=all) and the producer
    is idempotent (a retried send is not written twice)."""
    return AIOKafkaProducer(
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        request_timeout_ms=15000,
        client_id=client_id,
        **aiokafka_config(settings),
    )


class OutboxRelay:
    """Drains one service's outbox table in id order: sends a batch, waits for every ack, then marks the
    batch published. A crash between the two re-sends (at least once); consumers are idempotent on event_id.

    After a failed batch the producer is replaced: a failed batch can leave an idempotent producer unusable
    for good (after a broker restart: OutOfOrderSequenceNumber on every later send). The fresh one has a new
    producer id; the unmarked rows are sent again. The relay starts before its broker and waits for it:
    what it cannot publish stays in the outbox. Set ``wakeup`` after a commit that queued rows to publish them
    without waiting for the next poll.

    ``one_relay`` (PostgreSQL): publish only while holding the table's session advisory lock, on a
    connection of the relay's own. Without it, every process of a replicated service sends every row it
    finds unpublished (measured: two relays under a steady load sent every row twice), and each consumer
    does the work of each copy. The lock goes with its connection, so a crashed or stopped publisher hands
    over within ``STANDBY_S``. The lock only saves copies: a standby that sees the oldest unpublished row
    stay the oldest for ``silent_after_s`` publishes as well until the outbox is empty."""

    def __init__(
        self,
        engine: Engine,
        model: type[OutboxBase],
        make_producer: Callable[[], Any],
        *,
        batch: int = 500,
        idle_s: float = 0.2,
        write_lock: AbstractContextManager[Any] | None = None,
        on_published: Callable[[int], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
        one_relay: bool = True,
        silent_after_s: float = PUBLISHER_SILENT_S,
    ) -> None:
        self.engine = engine
        self.model = model
        self.table = SQLModel.metadata.tables[str(model.__tablename__)]  # Core, for plain-row statements
        self.make_producer = make_producer  # e.g. ``lambda: new_producer(settings, "cme-notify")``
        self.batch = batch
        self.idle_s = idle_s
        self.write_lock = write_lock or contextlib.nullcontext()  # SQLite's one writer: the owner's lock
        self.on_published = on_published  # a metric: rows published per batch
        self.on_depth = on_depth  # a gauge: rows not yet published, at most once a second
        self.wakeup = asyncio.Event()
        self.one_relay = one_relay and engine.dialect.name == "postgresql"
        self.last_turn: float | None = None  # time.monotonic() at the loop's latest turn (liveness)
        self._lock: Connection | None = None  # holds the advisory lock while this relay publishes
        self.silent_after_s = silent_after_s
        self._oldest_seen: tuple[int, float] | None = None  # the oldest unpublished row, first seen when
        self._helping = False  # publishing beside a silent lock holder, until the outbox is empty

    def _may_publish(self) -> bool:
        """Whether to publish now: as the lock's holder, or beside a holder that publishes nothing."""
        if self._try_to_lead():
            self._helping = False
            return True
        table = self.table
        with self.engine.connect() as connection:
            oldest = connection.execute(
                sa_select(func.min(table.c.id)).where(table.c.published_at.is_(None))
            ).scalar()
        if oldest is None:
            self._helping, self._oldest_seen = False, None
            return False
        if self._helping:
            return True
        now = time.monotonic()
        if self._oldest_seen is None or self._oldest_seen[0] != oldest:
            self._oldest_seen = (oldest, now)
            return False
        if now - self._oldest_seen[1] < self.silent_after_s:
            return False
        log.warning("outbox_relay_publisher_silent", table=self.model.__tablename__, oldest_row=oldest)
        self._helping = True
        return True

    def _lock_key(self) -> int:
        """The table's advisory lock key: the same in every process, distinct per table."""
        digest = hashlib.sha256(f"cme-outbox-relay:{self.model.__tablename__}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def _try_to_lead(self) -> bool:
        """Whether this relay may publish now: always without ``one_relay``; else while it holds the lock
        (taken here when free, checked here when held: a lost connection has released it)."""
        if not self.one_relay:
            return True
        if self._lock is not None:
            try:
                self._lock.execute(text("SELECT 1"))
                return True
            except Exception:
                self._release()
        connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            held = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self._lock_key()})
            if held.scalar():
                self._lock = connection
                log.info("outbox_relay_publishing", table=self.model.__tablename__)
                return True
        except Exception:
            connection.invalidate()
            raise
        connection.close()  # no lock taken on it: back to the pool
        return False

    def _release(self) -> None:
        """Give the lock up: its connection is closed, not pooled (a pooled one would keep the lock)."""
        if self._lock is not None:
            with contextlib.suppress(Exception):
                self._lock.invalidate()
            self._lock = None

    def _load(self) -> list[Any]:
        """The oldest unpublished rows as plain rows (id, topic, key, value): building ORM objects cost
        ~30 us a row, measured, in the same process as the API it relays for."""
        table = self.table
        stmt = (
            sa_select(table.c.id, table.c.topic, table.c.key, table.c.value)
            .where(table.c.published_at.is_(None))
            .order_by(table.c.id)
            .limit(self.batch)
        )
        with self.engine.connect() as connection:
            return list(connection.execute(stmt).all())

    def _mark(self, ids: list[int]) -> None:
        table = self.table
        with self.write_lock, self.engine.begin() as connection:
            connection.execute(update(table).where(table.c.id.in_(ids)).values(published_at=utcnow()))

    def depth(self) -> int:
        """How many rows are not published yet."""
        with Session(self.engine) as session:
            stmt = select(func.count()).select_from(self.model).where(col(self.model.published_at).is_(None))
            return int(session.exec(stmt).one())

    async def relay_once(self, producer: Any) -> int:
        """Publish the oldest unpublished rows, in order; returns how many were published."""
        rows = await asyncio.to_thread(self._load)
        if not rows:
            return 0
        acks: list[Awaitable[Any]] = []
        for row in rows:
            key = row.key.encode() if row.key else None
            acks.append(await producer.send(row.topic, row.value, key=key))
        await asyncio.gather(*acks)
        await asyncio.to_thread(self._mark, [r.id for r in rows if r.id is not None])
        if self.on_published is not None:
            self.on_published(len(rows))
        return len(rows)

    async def run(self, stop: asyncio.Event) -> None:
        """Drain the outbox until ``stop`` is set; a broker outage only delays publishing."""
        producer = await start_with_retry(self.make_producer, stop, "outbox-producer")
        if producer is None:
            return
        depth_due = 0.0
        try:
            while not stop.is_set():
                self.last_turn = time.monotonic()
                self.wakeup.clear()
                try:
                    if not await asyncio.to_thread(self._may_publish):
                        if self.on_depth is not None:  # the gauge stays true on a standby too
                            self.on_depth(await asyncio.to_thread(self.depth))
                        await wait_for_event(stop, STANDBY_S)  # another process publishes
                        continue
                    published = await self.relay_once(producer)
                    if self.on_depth is not None and time.monotonic() >= depth_due:
                        self.on_depth(await asyncio.to_thread(self.depth))
                        depth_due = time.monotonic() + 1.0
                except Exception as exc:
                    log.warning(
                        "outbox_relay_failed", table=self.model.__tablename__, error=type(exc).__name__
                    )
                    with contextlib.suppress(Exception):
                        await producer.stop()
                    self.last_turn = None  # waiting for the broker, not stuck: readiness reports Kafka
                    producer = await start_with_retry(self.make_producer, stop, "outbox-producer")
                    if producer is None:
                        return
                    await wait_for_event(stop, RETRY_S)
                    continue
                if published < self.batch:
                    idle_s = min(self.idle_s, LEADER_POLL_S) if self.one_relay else self.idle_s
                    await wait_for_event(self.wakeup, idle_s)
                    # Let a burst of single commits gather: one cycle (load, send, mark) for many rows.
                    await wait_for_event(stop, LINGER_S)
        finally:
            if producer is not None:  # None: asked to stop while starting a fresh producer
                await producer.stop()
            await asyncio.to_thread(self._release)
