"""Garbage collection policy: the rebuild's collection per batch (off between batches, a batch's cycles
freed at its end, automatic collection as it was afterwards) and a service's frozen start-up heap."""

from __future__ import annotations

import gc
import weakref

from shared.gc_policy import collected_per_batch, freeze_startup_heap


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


def test_what_survives_a_batch_is_not_scanned_again() -> None:
    try:
        with collected_per_batch() as after_batch:
            before = gc.get_freeze_count()
            kept = [Node() for _ in range(100)]
            after_batch()
            assert gc.get_freeze_count() >= before + len(kept)
    finally:
        gc.unfreeze()


def test_a_frozen_object_is_still_freed_by_reference_count() -> None:
    try:
        kept = Node()
        alive = weakref.ref(kept)
        freeze_startup_heap()
        assert gc.get_freeze_count() > 0
        del kept
        assert alive() is None
    finally:
        gc.unfreeze()


def test_what_is_made_after_start_up_is_collected_as_before() -> None:
    thresholds = gc.get_threshold()
    try:
        freeze_startup_heap()
        assert gc.get_threshold() == thresholds
        garbage = cycle()
        gc.collect(0)
        assert garbage() is None
    finally:
        gc.unfreeze()


def test_collection_stays_off_when_it_was_off() -> None:
    gc.disable()
    try:
        with collected_per_batch():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
