"""The rebuild's garbage collection per batch: off between batches, a batch's cycles freed at its end, and
collection as it was afterwards."""

from __future__ import annotations

import gc
import weakref

from shared.gc_batches import collected_per_batch


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_a_batch_cycle_is_freed_at_the_batch_end_and_not_before() -> None:
    assert gc.isenabled()
    with collected_per_batch() as after_batch:
        assert not gc.isenabled()
        garbage = cycle()
        for _ in range(5_000):  # far past the allocations that would start an automatic collection
            Node()
        assert garbage() is not None
        after_batch()
        assert garbage() is None
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_what_survives_a_batch_is_not_scanned_again_until_the_loop_ends() -> None:
    with collected_per_batch() as after_batch:
        kept = [Node() for _ in range(100)]
        after_batch()
        assert gc.get_freeze_count() >= len(kept)
    assert gc.get_freeze_count() == 0


def test_collection_stays_off_when_it_was_off() -> None:
    gc.disable()
    try:
        with collected_per_batch():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
