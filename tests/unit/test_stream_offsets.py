"""The offset guard of the faust workers: a partition is processed only in offset order from where it stands;
an event beyond that is held back and the partition read again (faust-streaming #221/#606: a record fetched
before a rebalance arrives after the seek, and the ones in between were lost)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from faust.transport import consumer as faust_consumer
from faust.types import TP

from shared.stream_offsets import OffsetGuard, disable_gap_booking, in_position

P0, P1 = TP("t-child-events", 0), TP("t-child-events", 1)


@dataclass
class FakeConsumer:
    _committed_offset: defaultdict[TP, int | None] = field(default_factory=lambda: defaultdict(lambda: None))
    sought: list[tuple[TP, int]] = field(default_factory=list)

    async def seek(self, tp: TP, offset: int) -> None:
        self.sought.append((tp, offset))


@dataclass
class FakeApp:
    consumer: FakeConsumer = field(default_factory=FakeConsumer)


@dataclass
class Msg:
    tp: TP
    offset: int


@dataclass
class Ev:
    message: Msg


def events(*where: tuple[TP, int]) -> list[Any]:
    return [Ev(Msg(tp, offset)) for tp, offset in where]


def offsets(admitted: list[Any]) -> list[tuple[int, int]]:
    return [(e.message.tp.partition, e.message.offset) for e in admitted]


def test_in_order_batches_pass_whole() -> None:
    guard = OffsetGuard(FakeApp())
    guard.app.consumer._committed_offset[P0] = 10
    admitted, rewind = guard.admit(events((P0, 10), (P1, 3), (P0, 11), (P1, 4)))
    assert offsets(admitted) == [(0, 10), (1, 3), (0, 11), (1, 4)] and rewind == {}
    admitted, rewind = guard.admit(events((P0, 12), (P0, 13)))
    assert offsets(admitted) == [(0, 12), (0, 13)] and rewind == {}


def test_a_record_fetched_before_the_seek_is_held_back_and_the_partition_read_again() -> None:
    app = FakeApp()
    app.consumer._committed_offset[P0] = 31  # the rebalance sought the partition to 31
    guard = OffsetGuard(app)
    stale = events((P0, 40), (P0, 41), (P1, 7))
    admitted = asyncio.run(in_position(stale, guard))
    assert offsets(admitted) == [(1, 7)]  # the other partition goes on
    assert app.consumer.sought == [(P0, 31)]
    # Read again from 31: all of it is processed, in order.
    admitted, rewind = guard.admit(events(*((P0, o) for o in range(31, 42))))
    assert [o for _, o in offsets(admitted)] == list(range(31, 42)) and rewind == {}


def test_a_hole_still_there_after_reading_again_is_let_through() -> None:
    # A transaction marker of another producer takes an offset no record has.
    guard = OffsetGuard(FakeApp())
    guard.admit(events((P0, 5)))
    assert guard.admit(events((P0, 7)))[1] == {P0: 6}
    admitted, rewind = guard.admit(events((P0, 7), (P0, 8)))
    assert offsets(admitted) == [(0, 7), (0, 8)] and rewind == {}


def test_redeliveries_behind_the_position_are_processed_again() -> None:
    guard = OffsetGuard(FakeApp())
    guard.admit(events((P0, 20), (P0, 21)))
    admitted, rewind = guard.admit(events((P0, 18), (P0, 19), (P0, 20), (P0, 21), (P0, 22)))
    assert len(admitted) == 5 and rewind == {}


def test_the_group_committed_further_by_another_worker_sets_the_position() -> None:
    app = FakeApp()
    guard = OffsetGuard(app)
    guard.admit(events((P0, 100)))  # this worker read up to 100, then the partition went elsewhere
    app.consumer._committed_offset[P0] = 150  # and came back, committed at 150 by the other worker
    assert guard.admit(events((P0, 160)))[1] == {P0: 150}


def test_faust_no_longer_counts_skipped_offsets_as_done() -> None:
    from faust.transport.drivers.aiokafka import Consumer as KafkaConsumer

    disable_gap_booking()
    consumer: Any = object.__new__(KafkaConsumer)
    consumer._committed_offset = defaultdict(lambda: None)
    consumer._gap = defaultdict(list)
    asyncio.run(consumer._add_gap(P0, 32, 39))
    assert not consumer._gap[P0]
    assert KafkaConsumer._add_gap is faust_consumer.Consumer._add_gap
