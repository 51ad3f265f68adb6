"""Find a faust stream partition that has stopped being read, and read it again from its committed offset.

A restarted tracking worker was seen twice (clean-clone CI runs) processing one intake partition's new facts
and never reading the other's: recovery had finished, the fetcher and every agent were idle, and the
partition's records sat in the log. faust can lose a partition this way without a trace: its drain loop drops
a record whose offset is behind the partition's read offset (logged at its "dev" level only), and a partition
taken out of its fetch set (a full stream buffer, a pause) is fetched again only when faust puts it back. A
child's fact left unread is a child out of sight until the next rebalance, so whatever faust's cause, every
faust worker here (tracking, attendance) checks each stream partition it holds:

- behind: its committed offset (where the group will resume) is short of the partition's end in the broker;
- quiet: no record of it is in the worker's hands (in a stream buffer or a batch), and the committed offset
  has not moved for ``stall_after_s``;
- settled: no rebalance, no table recovery and no stop under way (faust pauses partitions then, on purpose).

Such a partition is put back in faust's fetch set and sought to its committed offset (every handler is
idempotent, so a record read twice is harmless), once per (committed, end): an end that never moves after a
seek is a hole in the log (a transaction marker of an outside producer), not a stall. Each repair is logged
with faust's view of the partition (position, read offset, fetch set, pause and buffer state), so the log says
which cause it was, and counted in ``cme_stream_partition_stalls_total``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter

from shared.logs import get_logger

log = get_logger(__name__)

STALLS = Counter(
    "cme_stream_partition_stalls_total",
    "Stream partitions found behind and quiet, and read again from their committed offset, by topic",
    ["topic"],
)


@dataclass(frozen=True)
class PartitionState:
    """One stream partition as the check sees it."""

    committed: int  # where the group resumes: the committed offset, or the log's start if none is
    end: int  # the broker's end offset
    in_hand: bool  # a record of it is in a stream buffer or a batch, not yet acknowledged


@dataclass
class StallWatch:
    """Which partitions are stalled (pure: the faust side is ``watch_for_stalls``)."""

    stall_after_s: float = 30.0
    monotonic: Callable[[], float] = time.monotonic
    quiet_since: dict[Any, tuple[int, float]] = field(default_factory=dict)  # per partition: committed, since
    repaired: dict[Any, tuple[int, int]] = field(default_factory=dict)  # per partition: (committed, end)

    def unsettled(self) -> None:
        """A rebalance, recovery or stop is under way: no partition has been quiet through it."""
        self.quiet_since.clear()

    def stalled(self, states: Mapping[Any, PartitionState]) -> list[Any]:
        """The partitions to read again now."""
        now = self.monotonic()
        for tp in set(self.quiet_since) - set(states):  # revoked
            del self.quiet_since[tp]
        found = []
        for tp, state in states.items():
            if state.in_hand or state.committed >= state.end:
                self.quiet_since.pop(tp, None)
                continue
            committed, since = self.quiet_since.get(tp, (state.committed, now))
            if committed != state.committed:
                since = now
            self.quiet_since[tp] = (state.committed, since)
            if now - since >= self.stall_after_s and self.repaired.get(tp) != (state.committed, state.end):
                found.append(tp)
        return found

    def mark_repaired(self, tp: Any, state: PartitionState) -> None:
        self.repaired[tp] = (state.committed, state.end)
        self.quiet_since.pop(tp, None)


def settled(app: Any) -> bool:
    """No rebalance, table recovery or stop under way, and the flow running."""
    consumer = app.consumer
    return not (app.rebalancing or app.in_recovery or app.should_stop or not consumer.flow_active)


def stream_partitions(app: Any) -> list[Any]:
    """The assigned partitions that streams read (not the tables' changelogs)."""
    consumer = app.consumer
    return sorted(tp for tp in consumer.assignment() if not consumer._is_changelog_tp(tp))


async def partition_states(app: Any, tps: Iterable[Any]) -> dict[Any, PartitionState]:
    consumer = app.consumer
    tps = list(tps)
    if not tps:
        return {}
    ends = await consumer.highwaters(*tps)
    committed = {tp: consumer._committed_offset.get(tp) for tp in tps}
    never = [tp for tp, offset in committed.items() if offset is None]
    starts = await consumer.earliest_offsets(*never) if never else {}
    in_hand = {message.tp for message in list(consumer._unacked_messages)}
    return {
        tp: PartitionState(
            committed=committed[tp] if committed[tp] is not None else starts.get(tp, 0),
            end=ends[tp],
            in_hand=tp in in_hand,
        )
        for tp in tps
        if ends.get(tp) is not None
    }


async def read_again(app: Any, tp: Any, state: PartitionState) -> None:
    """Log faust's view of the partition, put it back in the fetch set and seek it to its committed offset."""
    consumer = app.consumer
    try:
        position = await consumer.position(tp)
    except Exception as exc:  # the position is for the log only
        position = f"unknown ({type(exc).__name__})"
    log.warning(
        "stream_partition_stalled",
        topic=tp.topic,
        partition=tp.partition,
        committed=state.committed,
        end=state.end,
        position=position,
        read_offset=consumer._read_offset.get(tp),
        fetching=tp in consumer._get_active_partitions(),
        paused=tp in consumer._paused_partitions,
        buffered=tp in consumer._buffered_partitions,
    )
    consumer._buffered_partitions.discard(tp)
    consumer.resume_partitions({tp})
    await consumer.seek(tp, state.committed)
    STALLS.labels(tp.topic).inc()


def watch_for_stalls(app: Any, stall_after_s: float, check_every_s: float) -> StallWatch:
    """Check the app's stream partitions every ``check_every_s`` on its loop, and read a stalled one again."""
    watch = StallWatch(stall_after_s=stall_after_s)

    async def check_partitions() -> None:
        while not app.should_stop:
            await asyncio.sleep(check_every_s)
            try:
                if not settled(app):
                    watch.unsettled()
                    continue
                states = await partition_states(app, stream_partitions(app))
                if not settled(app):  # a rebalance began while the broker answered
                    watch.unsettled()
                    continue
                for tp in watch.stalled(states):
                    await read_again(app, tp, states[tp])
                    watch.mark_repaired(tp, states[tp])
            except Exception as exc:  # the broker may be moving: the next check looks again
                log.warning("stream_stall_check_failed", error_type=type(exc).__name__)

    app.task(check_partitions)
    return watch
