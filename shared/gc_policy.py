"""When CPython's cyclic garbage collector looks at what, for the two shapes of process here.

**A service** (a faust worker, an API): what exists once it has started (modules, pydantic and SQLAlchemy
schemas, the validators' tables, the app) lives as long as the process, yet every full collection traverses it
again. ``freeze_startup_heap`` moves it out of the collector's view once, just before the process starts its
work, and it then collects less often (``SERVICE_THRESHOLDS``). The tracking worker, ``python -m
bench.tracking --events 10000``, runs alternated: 566-655 events/s as it was, 655-730 with the heap frozen,
760-786 frozen and collecting less often (docs/PERFORMANCE.md).

**A batch loop that keeps a growing heap** (the rebuild's record of every child). CPython's automatic
collections run every 700 allocations and, as the heap of long-lived objects grows, re-scan more and more of
it: in the rebuild they took about a third of the wall time (21,673 facts: 7.1-7.3 s with them, 4.5 s with
none; docs/PERFORMANCE.md, "Rebuild from the log"). Here they are off for the loop, and after each batch one
full collection takes the batch's cyclic garbage, then what survived is frozen (``gc.freeze``): the next
collection scans only what the next batch made, so the work is proportional to the batch, and memory stays
bounded (a batch's cycles live until its end, no longer).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# A service's collections: the youngest generation every 20,000 net allocations instead of 700 (a batch of
# records allocates far more than 700 objects that live until the batch ends, so most young collections only
# promoted them), the middle every 20 of those, a full one every 50 middle ones.
SERVICE_THRESHOLDS = (20_000, 20, 50)


def freeze_startup_heap() -> None:
    """Collect once, leave everything alive now out of later collections (it still frees by reference count;
    only a cycle among these objects that later becomes garbage is kept), and collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SERVICE_THRESHOLDS)


def _collect_batch() -> None:
    gc.collect()
    gc.freeze()


@contextmanager
def collected_per_batch() -> Iterator[Callable[[], None]]:
    """Automatic collection off inside; call what it yields after each batch. On leaving, automatic collection
    is as it was. What the batches froze stays frozen (no partial ``gc.unfreeze`` exists, and a full one would
    also thaw a service's ``freeze_startup_heap``): it is still freed by reference count when dropped."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield _collect_batch
    finally:
        if enabled:
            gc.enable()
