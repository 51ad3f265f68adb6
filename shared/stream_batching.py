"""Micro-batches of a faust stream, with the offset guarantee of one-at-a-time processing (tracking's and
attendance's workers both batch this way).

``stream.take_events(max, within)`` hands the agent up to ``max`` events, or what came within ``within``
seconds. It acks the batch's events when the agent asks for the next batch, and also when the agent is
cancelled mid-batch (its ``finally``), after which faust would commit their offsets on the way out. So every
event is held here (one more reference on its message) and let go only after the batch's database or table
writes are done and its outputs acknowledged by the broker: an event whose batch did not finish stays
unacked, its offset is not committed, and it is delivered again after a restart.

The events of a batch may come from several partitions (in order within each). faust's table operations take
the partition from the stream's current event, which ``take_events`` does not set in the agent's task:
``current`` sets it before each table read or write, in the agent's task only (a context variable): the
stream's own ``current_event`` attribute is left alone, since ``take_events`` reads it in the task that fills
the buffer. This is faust's private ``_current_event``: the one place that touches it.

Only events in offset position are handed on (``shared.stream_offsets``): after a rebalance faust can deliver
a record beyond the partition's position; it stays held (never acknowledged) and the partition is read again.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from faust import streams as faust_streams

from shared.stream_offsets import guard_for, in_position


async def batches(stream: Any, max_records: int, within_s: float) -> AsyncGenerator[Sequence[Any], None]:
    """The stream's events in batches, each event held until ``release``; only events in offset position
    (``shared.stream_offsets``): one beyond it stays held and unacknowledged, and is read again."""
    guard = guard_for(stream.app)
    async for events in stream.take_events(max_records, within=within_s):
        hold(events)
        admitted = await in_position(events, guard)
        if admitted:
            yield admitted


def hold(events: Sequence[Any]) -> None:
    """Keep the events' offsets from being committed until ``release``."""
    for event in events:
        event.message.incref()


def release(events: Sequence[Any]) -> None:
    """The events are done (outputs acknowledged, state written): their offsets may be committed."""
    for event in events:
        # Drops our reference; the last of the stream's acks marks the offset as safe to commit.
        event.ack()


def current(event: Any) -> None:
    """Make ``event`` the current event of this task, as ``faust.current_event()`` reports it (faust tables
    take the partition of a read or write from it). The batch holds the event, so the weak reference
    lives as long as the batch."""
    faust_streams._current_event.set(weakref.ref(event))


def by_partition(events: Sequence[Any]) -> list[list[Any]]:
    """A batch's events per partition, each in offset order (a batch may span the worker's partitions)."""
    groups: dict[Any, list[Any]] = {}
    for event in events:
        groups.setdefault(event.message.tp, []).append(event)
    return list(groups.values())
