"""Tracking's progress marks (the pure bookkeeping; the case agent sends them on the real broker in the
integration and e2e tests): what a mark claims, that it only says more, and at most once a second."""

from __future__ import annotations

from datetime import UTC, datetime

from services.tracking.stream.progress import ProgressMarks


def utc(hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 11, 3, hour, minute, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def said(marks: ProgressMarks, partitions: list[int] | None = None) -> list[tuple[int, int, datetime | None]]:
    """Send what is due (as acknowledged by the broker) and return it."""
    due = marks.due(partitions)
    for mark in due:
        marks.acknowledged(mark)
    return [(m.payload.partition, m.payload.next_offset, m.payload.folded_to) for m in due]


def test_a_mark_claims_the_batch_newest_time_and_the_offset_after_it() -> None:
    marks = ProgressMarks(monotonic=Clock())
    marks.folded({0: utc(9), 1: utc(8)})
    marks.processed([(0, 4), (0, 5), (1, 2)])
    assert said(marks) == [(0, 6, utc(9)), (1, 3, utc(8))]


def test_marks_only_move_forward_and_only_when_they_say_more() -> None:
    clock = Clock()
    marks = ProgressMarks(monotonic=clock)
    marks.folded({0: utc(9)})
    marks.processed([(0, 5)])
    assert said(marks) == [(0, 6, utc(9))]
    clock.t += 5
    assert said(marks) == []  # nothing new: an idle partition sends nothing
    marks.folded({0: utc(8)})  # an older fact (a late one): the mark stays
    marks.processed([(0, 2)])  # a redelivery behind the position
    assert said(marks) == []
    marks.processed([(0, 6)])
    assert said(marks) == [(0, 7, utc(9))]


def test_at_most_one_mark_per_partition_per_interval() -> None:
    clock = Clock()
    marks = ProgressMarks(interval_s=1.0, monotonic=clock)
    marks.folded({0: utc(9), 1: utc(9)})
    assert [p for p, _, _ in said(marks, [0])] == [0]  # the batch's partitions only
    marks.folded({0: utc(10)})
    clock.t += 0.5
    assert [p for p, _, _ in said(marks)] == [1]  # partition 0 sent half a second ago: held back
    clock.t += 0.5
    assert said(marks) == [(0, 0, utc(10))]  # the held claim goes out with the next check


def test_a_started_worker_says_where_its_partitions_stand_from_the_committed_offsets() -> None:
    marks = ProgressMarks(monotonic=Clock())
    marks.committed({0: 40, 1: None})  # partition 1: nothing committed yet, nothing claimed
    assert said(marks) == [(0, 40, None)]


def test_a_mark_not_acknowledged_is_sent_again() -> None:
    clock = Clock()
    marks = ProgressMarks(monotonic=clock)
    marks.folded({0: utc(9)})
    assert len(marks.due()) == 1  # sending failed: not acknowledged
    clock.t += 1
    assert said(marks) == [(0, 0, utc(9))]
