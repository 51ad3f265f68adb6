"""The stall watch's decisions (shared/stream_stalls.py), on a clock the test moves."""

from __future__ import annotations

from shared.stream_stalls import PartitionState, StallWatch


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _watch(clock: Clock) -> StallWatch:
    return StallWatch(stall_after_s=30, monotonic=clock)


def behind(committed: int = 3, end: int = 5, in_hand: bool = False) -> PartitionState:
    return PartitionState(committed=committed, end=end, in_hand=in_hand)


def test_a_partition_behind_and_quiet_is_stalled_only_after_the_wait() -> None:
    clock = Clock()
    watch = _watch(clock)
    assert watch.stalled({"p1": behind()}) == []
    clock.now = 29.9
    assert watch.stalled({"p1": behind()}) == []
    clock.now = 30
    assert watch.stalled({"p1": behind()}) == ["p1"]


def test_a_caught_up_partition_is_never_stalled() -> None:
    clock = Clock()
    watch = _watch(clock)
    for clock.now in (0, 100, 1000):
        assert watch.stalled({"p0": behind(committed=5, end=5)}) == []


def test_a_record_in_hand_or_a_commit_starts_the_wait_again() -> None:
    clock = Clock()
    watch = _watch(clock)
    watch.stalled({"p1": behind()})
    clock.now = 20
    watch.stalled({"p1": behind(in_hand=True)})  # a batch of it is being handled (a slow database, say)
    clock.now = 45
    assert watch.stalled({"p1": behind()}) == []
    clock.now = 60
    watch.stalled({"p1": behind(committed=4)})  # it moved
    clock.now = 89
    assert watch.stalled({"p1": behind(committed=4)}) == []
    clock.now = 90
    assert watch.stalled({"p1": behind(committed=4)}) == ["p1"]


def test_a_repaired_partition_is_repaired_again_only_when_its_end_or_commit_moves() -> None:
    clock = Clock()
    watch = _watch(clock)
    watch.stalled({"p1": behind()})
    clock.now = 30
    assert watch.stalled({"p1": behind()}) == ["p1"]
    watch.mark_repaired("p1", behind())
    # Still short of the end after the seek: a hole (a transaction marker), not a stall. Left alone.
    for clock.now in (40, 70, 200):
        assert watch.stalled({"p1": behind()}) == []
    # New records that are not read either: a stall again.
    clock.now = 210
    watch.stalled({"p1": behind(end=6)})
    clock.now = 240
    assert watch.stalled({"p1": behind(end=6)}) == ["p1"]


def test_a_rebalance_or_a_revocation_forgets_the_quiet_time() -> None:
    clock = Clock()
    watch = _watch(clock)
    watch.stalled({"p1": behind(), "p2": behind()})
    clock.now = 20
    watch.unsettled()
    clock.now = 40
    assert watch.stalled({"p1": behind()}) == []  # p2 revoked meanwhile
    assert "p2" not in watch.quiet_since
    clock.now = 70
    assert watch.stalled({"p1": behind()}) == ["p1"]
