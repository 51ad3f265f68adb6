"""Several processes of one service on one PostgreSQL database (deploy/k8s runs two or three of each) each
run a relay on the service's outbox. One of them publishes at a time: every row once, in id order, not once
per process; when it stops, another takes over and what is left is published.

The relays, the outbox table and the database are real; the producers stand in for the broker (each send is
acknowledged a moment later, as a broker's is), so what each relay sent can be counted."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

from services.referral.models import ReferralOutbox
from shared.db import make_engine
from shared.outbox import OutboxRelay
from tests.support.producer import RecordingProducer

ACK_DELAY_S = 0.002  # a broker's acknowledgement comes back a little after the send
ADVISORY_LOCKS = (  # the test's database is its own: its advisory locks are the relays'
    "FROM pg_locks WHERE locktype = 'advisory'"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


@pytest.fixture
def engine(postgres_url: str) -> Engine:
    engine = make_engine(postgres_url)
    SQLModel.metadata.create_all(engine, tables=[ReferralOutbox.__table__])  # type: ignore[attr-defined]
    return engine


def _add(engine: Engine, first: int, count: int) -> None:
    with Session(engine) as session:
        for n in range(first, first + count):
            value = f"{n:05d}".encode()
            session.add(ReferralOutbox(event_id=f"e{n:05d}", topic="t", key=f"k{n % 7}", value=value))
        session.commit()


def _unpublished(engine: Engine) -> int:
    with Session(engine) as session:
        return len(session.exec(select(ReferralOutbox.id).where(ReferralOutbox.published_at == None)).all())  # noqa: E711


async def _until(condition: object, timeout_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition() and loop.time() < deadline:  # type: ignore[operator]
        await asyncio.sleep(0.05)


def _relay(engine: Engine, name: str, sent: list[tuple[str, bytes]]) -> OutboxRelay:
    producer = lambda: RecordingProducer(sent, name, ACK_DELAY_S)  # noqa: E731
    return OutboxRelay(engine, ReferralOutbox, producer, batch=50, idle_s=0.02)


async def test_two_relays_on_one_outbox_publish_each_row_once_in_order(engine: Engine) -> None:
    sent: list[tuple[str, bytes]] = []
    stop = asyncio.Event()
    relays = [_relay(engine, name, sent) for name in ("a", "b")]
    running = [asyncio.create_task(r.run(stop)) for r in relays]
    rows = 0
    for _ in range(60):  # both replicas keep accepting while the relays run
        await asyncio.to_thread(_add, engine, rows, 10)
        rows += 10
        for relay in relays:
            relay.wakeup.set()
        await asyncio.sleep(0.01)
    await _until(lambda: _unpublished(engine) == 0)
    stop.set()
    await asyncio.gather(*running)
    copies = Counter(value for _, value in sent)
    assert _unpublished(engine) == 0
    assert len(copies) == rows
    assert max(copies.values()) == 1, f"{sum(copies.values()) - rows} rows published again"
    assert [value for _, value in sent] == sorted(value for _, value in sent)  # in id order
    assert len({name for name, _ in sent}) == 1  # one relay published; the other stood by


async def test_when_the_publishing_relay_stops_another_takes_over(engine: Engine) -> None:
    sent: list[tuple[str, bytes]] = []
    first_stop, second_stop = asyncio.Event(), asyncio.Event()
    first = asyncio.create_task(_relay(engine, "first", sent).run(first_stop))
    await asyncio.to_thread(_add, engine, 0, 20)
    await _until(lambda: len(sent) == 20)
    second = asyncio.create_task(_relay(engine, "second", sent).run(second_stop))
    await asyncio.sleep(0.3)
    first_stop.set()  # the publishing replica goes away (a rollout, a crash)
    await first
    await asyncio.to_thread(_add, engine, 20, 20)
    await _until(lambda: _unpublished(engine) == 0)
    second_stop.set()
    await second
    assert _unpublished(engine) == 0
    assert [name for name, _ in sent] == ["first"] * 20 + ["second"] * 20
    assert Counter(value for _, value in sent).most_common(1)[0][1] == 1


async def test_a_publisher_that_loses_its_lock_stops_and_nothing_is_lost(engine: Engine) -> None:
    """The publisher's lock goes with its connection (a database restart, a network cut): it notices before
    its next batch, stops publishing until it holds the lock again, and every row is still published."""
    sent: list[tuple[str, bytes]] = []
    stop = asyncio.Event()
    running = [asyncio.create_task(_relay(engine, name, sent).run(stop)) for name in ("a", "b")]
    await asyncio.to_thread(_add, engine, 0, 20)
    await _until(lambda: len(sent) >= 20)
    with engine.connect() as connection:
        ended = connection.execute(text(f"SELECT count(pg_terminate_backend(pid)) {ADVISORY_LOCKS}")).scalar()
    assert ended == 1  # the publisher's lock connection, and only it
    await asyncio.sleep(1.5)  # the standby's next try for the lock, too
    await asyncio.to_thread(_add, engine, 20, 20)
    await _until(lambda: _unpublished(engine) == 0)
    with engine.connect() as connection:
        locks = connection.execute(text(f"SELECT count(*) {ADVISORY_LOCKS}")).scalar()
    stop.set()
    await asyncio.gather(*running)
    copies = Counter(value for _, value in sent)
    assert set(copies) == {f"{n:05d}".encode() for n in range(40)}
    assert locks == 1  # one relay took the lock again
    assert max(copies.values()) == 1  # and only it published: the one that lost it noticed


async def test_a_lock_holder_that_publishes_nothing_does_not_hold_events_back(engine: Engine) -> None:
    """The lock's holder publishes nothing (stuck, or its lock kept by a connection that outlived it): the
    standby sees the oldest unpublished row stay the oldest and publishes the outbox itself."""
    sent: list[tuple[str, bytes]] = []
    stop = asyncio.Event()
    relay = OutboxRelay(
        engine,
        ReferralOutbox,
        lambda: RecordingProducer(sent, "standby", ACK_DELAY_S),
        idle_s=0.02,
        silent_after_s=0.5,
    )
    holder = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    holder.execute(text("SELECT pg_advisory_lock(:key)"), {"key": relay._lock_key()})
    try:
        running = asyncio.create_task(relay.run(stop))
        await asyncio.to_thread(_add, engine, 0, 30)
        await _until(lambda: _unpublished(engine) == 0)
        await asyncio.to_thread(_add, engine, 30, 5)  # later rows wait their turn again, then go too
        await _until(lambda: _unpublished(engine) == 0)
        stop.set()
        await running
    finally:
        holder.close()
    assert _unpublished(engine) == 0
    assert sorted(value for _, value in sent) == [f"{n:05d}".encode() for n in range(35)]
