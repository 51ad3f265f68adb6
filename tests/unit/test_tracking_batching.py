"""The worker's micro-batch mechanics, without a broker: offsets are released only after a batch is done
(also when faust acks the batch on its way out), a failed batch falls back to one by one so only the poison
record is dead-lettered, and outputs are published in order with one wait for all the acks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from faust import streams as faust_streams
from faust.types.tuples import Message
from sqlalchemy.exc import OperationalError

from services.tracking.stream import handling
from services.tracking.stream.handling import process_batch_or_one_by_one, send_all
from shared.stream_batching import batches, current, release


class FakeEvent:
    """A faust event as far as batching needs it: its message (a real faust Message, with its refcount) and
    key/value."""

    def __init__(self, offset: int, value: bytes = b"{}", partition: int = 0) -> None:
        self.message = Message("t.intake", partition, offset, 0.0, 0, None, b"k", value, None)
        self.message.incref()  # the conductor's reference for the one stream that reads it
        self.key, self.value = b"k", value

    def ack(self) -> bool:
        return self.message.ack(None)  # type: ignore[arg-type]


class FakeApp:
    """The app as the offset guard reads it (shared.stream_offsets): nothing committed yet."""

    def __init__(self) -> None:
        self.consumer = SimpleNamespace(_committed_offset={})


class FakeStream:
    """``take_events`` as faust 0.15 has it: yields a batch, then acks it when asked for the next one or
    when closed (also on cancellation)."""

    def __init__(self, events: list[FakeEvent], size: int) -> None:
        self.events, self.size = events, size
        self.closed = False
        self.app = FakeApp()

    async def take_events(self, max_: int, within: float) -> AsyncIterator[Sequence[FakeEvent]]:
        for start in range(0, len(self.events), self.size):
            batch = self.events[start : start + self.size]
            try:
                yield batch
            finally:
                for event in batch:
                    event.ack()
                self.closed = True


async def test_a_done_batch_is_released_and_acked() -> None:
    events = [FakeEvent(i) for i in range(4)]
    stream = FakeStream(events, size=2)
    seen: list[int] = []
    async for batch in batches(stream, 2, 0.05):
        assert not any(e.message.acked for e in batch)
        seen += [e.message.offset for e in batch]
        release(batch)
        assert not any(e.message.acked for e in batch)  # faust's own ack is the last reference
    assert seen == [0, 1, 2, 3]
    assert all(e.message.acked for e in events)


async def test_a_batch_cancelled_midway_stays_unacked() -> None:
    """faust acks the events of a batch in a ``finally`` when the agent is cancelled (shutdown): the hold
    keeps them unacked, so their offsets are not committed and they are delivered again."""
    events = [FakeEvent(i) for i in range(3)]
    stream = FakeStream(events, size=3)
    started = asyncio.Event()
    taken = batches(stream, 3, 0.05)

    async def agent() -> None:
        async for batch in taken:
            started.set()
            await asyncio.Event().wait()  # the database write or the broker's ack never comes
            release(batch)

    task = asyncio.create_task(agent())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await taken.aclose()  # as the loop closes left-over generators at shutdown
    for _ in range(100):  # the inner take_events generator is closed by the loop's finalizer hook
        if stream.closed:
            break
        await asyncio.sleep(0)
    assert stream.closed  # faust's finally ran and acked the batch once...
    assert not any(e.message.acked for e in events)  # ...and the hold kept every offset uncommitted
    assert all(e.message.refcount == 1 for e in events)


def test_current_sets_the_event_faust_tables_read() -> None:
    event = FakeEvent(7, partition=1)
    current(event)
    assert faust_streams.current_event() is event


class FakeTopic:
    def __init__(self, fail_on: bytes | None = None) -> None:
        self.sent: list[tuple[bytes | None, bytes]] = []
        self.acks: list[asyncio.Future[None]] = []
        self.fail_on = fail_on

    async def send(self, *, key: bytes | None, value: bytes) -> asyncio.Future[None]:
        self.sent.append((key, value))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if value == self.fail_on:
            fut.set_exception(RuntimeError("broker refused"))
        else:
            fut.set_result(None)
        self.acks.append(fut)
        return fut


async def test_send_all_publishes_in_order_and_waits_for_every_ack() -> None:
    a, b = FakeTopic(), FakeTopic()
    await send_all("test", [(a, b"1", b"x"), (b, b"2", b"y"), (a, b"1", b"z")])
    assert a.sent == [(b"1", b"x"), (b"1", b"z")] and b.sent == [(b"2", b"y")]
    assert all(f.done() for f in a.acks + b.acks)
    with pytest.raises(RuntimeError):
        await send_all("test", [(FakeTopic(fail_on=b"bad"), None, b"bad")])


class Recorder:
    """A batch handler that fails on poison records, recording what it processed."""

    def __init__(self, fail: type[BaseException] = ValueError, times: int = 10**6) -> None:
        self.calls: list[list[int]] = []
        self.fail, self.times = fail, times

    async def __call__(self, events: Sequence[Any]) -> None:
        self.calls.append([e.message.offset for e in events])
        if any(e.value == b"poison" for e in events) and self.times > 0:
            self.times -= 1
            raise self.fail("poison") if self.fail is ValueError else self.fail("db", {}, Exception("gone"))


async def test_a_whole_batch_succeeds_in_one_call() -> None:
    handler, dead_letters = Recorder(), FakeTopic()
    events = [FakeEvent(i) for i in range(5)]
    assert await process_batch_or_one_by_one("cases", dead_letters, events, handler) == 0
    assert handler.calls == [[0, 1, 2, 3, 4]]
    assert dead_letters.sent == []


async def test_a_poison_record_is_dead_lettered_alone_and_the_rest_processed() -> None:
    handler, dead_letters = Recorder(), FakeTopic()
    events = [FakeEvent(0), FakeEvent(1), FakeEvent(2, b"poison"), FakeEvent(3)]
    assert await process_batch_or_one_by_one("identity", dead_letters, events, handler) == 1
    # The batch once, then one by one in order; the poison once (poison is not retried).
    assert handler.calls == [[0, 1, 2, 3], [0], [1], [2], [3]]
    [(key, value)] = dead_letters.sent
    letter = orjson.loads(value)["payload"]
    assert (key, letter["offset"], letter["error_type"]) == (b"k", 2, "ValueError")


async def test_a_transient_failure_retries_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_wait(_: float) -> None:
        return None

    monkeypatch.setattr(handling.asyncio, "sleep", no_wait)
    handler, dead_letters = Recorder(fail=OperationalError, times=2), FakeTopic()
    events = [FakeEvent(0), FakeEvent(1, b"poison")]
    assert await process_batch_or_one_by_one("cases", dead_letters, events, handler) == 0
    assert handler.calls == [[0, 1], [0, 1], [0, 1]]
    assert dead_letters.sent == []


async def test_a_lone_record_keeps_the_one_record_semantics() -> None:
    handler, dead_letters = Recorder(), FakeTopic()
    assert await process_batch_or_one_by_one("cases", dead_letters, [FakeEvent(9, b"poison")], handler) == 1
    assert handler.calls == [[9]]
    assert len(dead_letters.sent) == 1


async def test_a_database_outage_longer_than_the_attempts_dead_letters_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The shared policy: a transient error is retried until it passes (tracking dead-lettered it after 5)."""

    async def no_wait(_: float) -> None:
        return None

    monkeypatch.setattr(handling.asyncio, "sleep", no_wait)
    handler, dead_letters = Recorder(fail=OperationalError, times=12), FakeTopic()
    assert await process_batch_or_one_by_one("cases", dead_letters, [FakeEvent(4, b"poison")], handler) == 0
    assert len(handler.calls) == 13 and dead_letters.sent == []
