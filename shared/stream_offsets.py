"""Never skip a record in a faust stream worker.

After a rebalance faust's consumer can deliver a record that was fetched before it, with an offset beyond the
position it has just sought to (faust-streaming issues #221 and #606). faust then books the offsets in between
as a "gap" (as if compaction had removed them), counts them as done at the next commit, and drops them when
they are fetched again because they are behind its read position. Our scale-out test found this as whole
batches of a child's facts that never reached the case store after a kill -9 of one of two tracking workers.

(A cap on commits past a message in flight, as #707 proposes, was tried too: it stalled a restarted worker in
a clean-clone run, so it is not used; our batches acknowledge in offset order, which #606 needs broken.)

Our topics are never compacted, so a jump in offsets is never a hole in the log. Two guards, used by every
faust worker (tracking, attendance):

- ``disable_gap_booking``: faust no longer counts skipped offsets as done, so it cannot commit past them.
- ``OffsetGuard``: a batch is taken per partition only in offset order from where the partition stands (the
  offset after the last one this worker processed, or the group's committed offset if that is further). An
  event beyond that is held back (never acknowledged, so never committed) and the consumer is sought back to
  the expected offset, so the records in between are read again. A jump that is still there after seeking
  back is a real hole (a transaction marker of a producer outside this project) and is let through.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from faust.transport import consumer as faust_consumer

from shared.logs import get_logger

log = get_logger(__name__)


async def _book_no_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
    """faust's Consumer._add_gap, replaced: a skipped offset stays undone until it is processed."""


def disable_gap_booking() -> None:
    """Process-wide: every faust app here reads only our own, never compacted, topics."""
    faust_consumer.Consumer._add_gap = _book_no_gap  # type: ignore[method-assign]


@dataclass
class OffsetGuard:
    """Admits a batch's events per partition in offset order; says where to seek back after a jump."""

    app: Any
    next_offset: dict[Any, int] = field(default_factory=dict)  # per partition: after the last one processed
    sought_back_to: dict[Any, int] = field(default_factory=dict)

    def expected(self, tp: Any) -> int | None:
        committed = self.app.consumer._committed_offset.get(tp)
        known = [x for x in (committed, self.next_offset.get(tp)) if x is not None]
        return max(known) if known else None

    def admit(self, events: Sequence[Any]) -> tuple[list[Any], dict[Any, int]]:
        """The events to process now, and the partitions to seek back (to the offset expected there). An
        event behind the expected offset is a redelivery and is processed again (every handler is
        idempotent); the rest of a partition after a jump waits for the records to be read again."""
        admitted: list[Any] = []
        rewind: dict[Any, int] = {}
        for event in events:
            tp, offset = event.message.tp, event.message.offset
            if tp in rewind:
                continue
            expected = self.expected(tp)
            if expected is not None and offset > expected and self.sought_back_to.get(tp) != expected:
                rewind[tp] = expected
                log.warning(
                    "stream_offset_jump",
                    topic=tp.topic,
                    partition=tp.partition,
                    expected=expected,
                    got=offset,
                )
                continue
            self.sought_back_to.pop(tp, None)
            self.next_offset[tp] = max(self.next_offset.get(tp, 0), offset + 1)
            admitted.append(event)
        self.sought_back_to.update(rewind)
        return admitted, rewind

    async def seek_back(self, rewind: Mapping[Any, int]) -> None:
        for tp, offset in rewind.items():
            await self.app.consumer.seek(tp, offset)


_guards: weakref.WeakKeyDictionary[Any, OffsetGuard] = weakref.WeakKeyDictionary()


def guard_for(app: Any) -> OffsetGuard:
    """The app's one guard (its agents read different topics, so their partitions never collide)."""
    guard = _guards.get(app)
    if guard is None:
        guard = _guards[app] = OffsetGuard(app)
    return guard


async def in_position(events: Sequence[Any], guard: OffsetGuard) -> list[Any]:
    """The events of a batch that may be processed now; the consumer is sought back where a partition
    jumped. The events held back are left unacknowledged (their offsets are never committed) and come again
    when the partition is read again from the expected offset."""
    admitted, rewind = guard.admit(events)
    if rewind:
        await guard.seek_back(rewind)
    return admitted
