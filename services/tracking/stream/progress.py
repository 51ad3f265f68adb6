"""Tracking's progress marks: how far the case agent has folded each partition of cme.child-events.v1, said
on the same partition of cme.case-transitions.v1, after the transitions it covers (docs/ESCALATION.md,
"Tracking's lag in the watermark"). Escalation's horizon waits for the mark, so it never decides a clock
due at T while a fact dated before T is still unfolded here.

A mark says: every record of the partition before ``next_offset``, and every fact up to ``folded_to`` (the
newest event time among them), is applied and its transitions acknowledged by the broker; it is sent after
them, so it can never overtake one. Marks are made from what the case agent has processed (a batch, once its
outputs are acknowledged, before its offsets are committed) and, after a start or a rebalance, from the
group's committed offsets. Escalation adds "caught up at t" itself, when ``next_offset`` is at the
partition's end asked for after t: an idle partition needs no marks, and a topic kept for ever no traffic.

A mark is sent at most once per partition per ``interval_s`` (a claim held back goes out with the next
check) and only when it says more than the last one. A repeat after a crash is harmless: escalation keeps
each mark's highest values.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.events.catalogue import encode_event
from shared.events.internal import TrackingProgress, tracking_progress
from shared.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class Claim:
    next_offset: int = 0
    folded_to: datetime | None = None

    def covers(self, other: Claim) -> bool:
        """Says at least as much as ``other``."""
        return self.next_offset >= other.next_offset and (
            other.folded_to is None or (self.folded_to is not None and self.folded_to >= other.folded_to)
        )

    def join(self, other: Claim) -> Claim:
        times = [t for t in (self.folded_to, other.folded_to) if t is not None]
        return Claim(max(self.next_offset, other.next_offset), max(times) if times else None)


@dataclass
class ProgressMarks:
    """The marks' bookkeeping, per partition number (pure: the faust side is ``send_marks`` and ``watch``)."""

    interval_s: float = 1.0
    monotonic: Callable[[], float] = time.monotonic
    claimed: dict[int, Claim] = field(default_factory=dict)  # what may be said now
    sent: dict[int, Claim] = field(default_factory=dict)  # the last mark acknowledged by the broker
    sent_at: dict[int, float] = field(default_factory=dict)  # when it was sent (monotonic)

    def claim(self, partition: int, claim: Claim) -> None:
        self.claimed[partition] = self.claimed.get(partition, Claim()).join(claim)

    def folded(self, newest: Mapping[int, datetime]) -> None:
        """Facts applied, their outputs acknowledged (``newest``: each partition's newest event time)."""
        for partition, moment in newest.items():
            self.claim(partition, Claim(folded_to=moment))

    def processed(self, offsets: Iterable[tuple[int, int]]) -> None:
        """Records (partition, offset) done: applied and acknowledged, dead-lettered or duplicates."""
        for partition, offset in offsets:
            self.claim(partition, Claim(next_offset=offset + 1))

    def committed(self, offsets: Mapping[int, int | None]) -> None:
        """The group's committed offsets of the partitions assigned here: what was processed before (by this
        worker or another), so a worker that has just started says where the partition stands."""
        for partition, offset in offsets.items():
            if offset is not None:
                self.claim(partition, Claim(next_offset=offset))

    def due(self, partitions: Iterable[int] | None = None) -> list[TrackingProgress]:
        """The marks to send now: claims that say more than the last mark sent, one per partition per interval
        at most."""
        now = self.monotonic()
        marks = []
        for partition in sorted(self.claimed if partitions is None else set(partitions) & set(self.claimed)):
            claim = self.claimed[partition]
            last = self.sent.get(partition)
            if last is not None and last.covers(claim):
                continue
            if now - self.sent_at.get(partition, float("-inf")) < self.interval_s:
                continue
            marks.append(tracking_progress(partition, claim.next_offset, claim.folded_to))
        return marks

    def acknowledged(self, mark: TrackingProgress) -> None:
        p = mark.payload
        self.sent[p.partition] = self.sent.get(p.partition, Claim()).join(Claim(p.next_offset, p.folded_to))
        self.sent_at[p.partition] = self.monotonic()


async def send_marks(transitions: Any, marks: list[TrackingProgress], progress: ProgressMarks) -> None:
    """Send each mark to its partition of the transitions topic and wait for the broker's acks. A failure is
    logged, not raised: the claim stays and the next check sends it (the facts' offsets do not wait on it)."""
    if not marks:
        return
    try:
        pending = [
            await transitions.send(key=None, value=encode_event(m), partition=m.payload.partition)
            for m in marks
        ]
        await asyncio.gather(*pending)
    except Exception as exc:
        log.warning("tracking_progress_not_sent", marks=len(marks), error_type=type(exc).__name__)
        return
    for mark in marks:
        progress.acknowledged(mark)


def read_committed(app: Any, topic: str, progress: ProgressMarks) -> None:
    """Claim the committed offsets of the assigned partitions of ``topic`` (faust's own record of them)."""
    if app.rebalancing:
        return
    committed = app.consumer._committed_offset
    progress.committed(
        {tp.partition: committed.get(tp) for tp in app.consumer.assignment() if tp.topic == topic}
    )


def watch(app: Any, topic: str, transitions: Any, progress: ProgressMarks) -> None:
    """On the worker's loop, four times an interval: claim the committed offsets, and send what is due."""

    async def report_progress() -> None:
        while not app.should_stop:
            try:
                read_committed(app, topic, progress)
                await send_marks(transitions, progress.due(), progress)
            except Exception as exc:  # sending may fail while the broker moves: the next check sends it
                log.warning("tracking_progress_check_failed", error_type=type(exc).__name__)
            # A quarter interval: a claim held back goes out as soon as its partition may send again.
            await asyncio.sleep(progress.interval_s / 4)

    app.task(report_progress)
